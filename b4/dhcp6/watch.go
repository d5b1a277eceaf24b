package dhcp6

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Result is one round of DHCPv6 provisioning: the Reply's Info, and the
// AFTR-Name resolved.
type Result struct {
	Info Info
	// AFTR is Info.AFTRName resolved to AAAA; invalid when there was no
	// name or it did not resolve (NameErr says why).
	AFTR    netip.Addr
	NameErr error
	// TTL is how long AFTR may be used before resolving again.
	TTL time.Duration
}

// Same reports whether r and o provision the B4 alike: same AFTR-Name
// address and same S46 binding.
func (r Result) Same(o Result) bool {
	if r.AFTR != o.AFTR || (r.Info.LW == nil) != (o.Info.LW == nil) {
		return false
	}
	return r.Info.LW == nil || *r.Info.LW == *o.Info.LW
}

// Watcher asks, resolves and keeps asking.
type Watcher struct {
	Client *Client
	// DNSPort is the port of the DHCPv6-given DNS servers; zero means 53.
	DNSPort uint16
	// Resolver, if set, replaces the resolver built from the Reply's DNS
	// servers (tests).
	Resolver *Resolver
	Logger   *slog.Logger
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Get sends an Information-Request, waits for the Reply (retransmitting
// until ctx ends) and resolves the AFTR-Name in it with the Reply's DNS
// servers, or the system resolver when it gave none (RFC 6334 §4, RFC 3646).
func (w *Watcher) Get(ctx context.Context) (Result, error) {
	log := w.log()
	info, err := w.Client.Ask(ctx)
	if err != nil {
		return Result{}, err
	}
	for _, e := range info.Refused {
		log.Warn("DHCPv6 option refused", "server", info.Server, "err", e)
	}
	log.Info("DHCPv6 reply", "server", info.Server, "aftr-name", info.AFTRName, "dns", info.DNS,
		"s46-lw", lwString(info.LW), "refresh", info.Refresh)
	r := Result{Info: info}
	w.resolve(ctx, &r)
	return r, nil
}

func lwString(l *LW) string {
	if l == nil {
		return "none"
	}
	return l.String()
}

// resolve fills r.AFTR from r.Info.AFTRName.
func (w *Watcher) resolve(ctx context.Context, r *Result) {
	r.AFTR, r.NameErr, r.TTL = netip.Addr{}, nil, 0
	if r.Info.AFTRName == "" {
		return
	}
	res := w.Resolver
	if res == nil {
		res = &Resolver{}
		port := w.DNSPort
		if port == 0 {
			port = 53
		}
		for _, a := range r.Info.DNS {
			res.Servers = append(res.Servers, netip.AddrPortFrom(a, port))
		}
	}
	r.AFTR, r.TTL, r.NameErr = res.ResolveAAAA(ctx, r.Info.AFTRName)
	if r.NameErr != nil {
		w.log().Warn("AFTR-Name not resolved", "name", r.Info.AFTRName, "err", r.NameErr)
		return
	}
	w.log().Info("AFTR-Name resolved", "name", r.Info.AFTRName, "aftr", r.AFTR, "ttl", r.TTL)
}

// Watch keeps last current until ctx ends: it resolves the AFTR-Name
// again at its TTL (a failed resolution is retried in 30 s, the last
// address kept meanwhile) and asks again at the Information Refresh Time
// (RFC 8415 §18.2.6), and calls onChange with every result that
// provisions the B4 differently from the one before.
func (w *Watcher) Watch(ctx context.Context, last Result, onChange func(Result)) {
	log := w.log()
	askAt := time.Now().Add(last.Info.Refresh)
	for {
		resolveAt := askAt
		if last.Info.AFTRName != "" {
			wait := last.TTL
			if last.NameErr != nil || wait <= 0 {
				wait = retryResolve
			}
			resolveAt = time.Now().Add(wait)
		}
		next := askAt
		if resolveAt.Before(next) {
			next = resolveAt
		}
		if sleep(ctx, time.Until(next)) != nil {
			return
		}
		cur := last
		if !next.Before(askAt) {
			r, err := w.Get(ctx)
			if err != nil {
				return // only ctx ends Ask
			}
			cur = r
			askAt = time.Now().Add(r.Info.Refresh)
		} else {
			w.resolve(ctx, &cur)
		}
		if cur.NameErr != nil && cur.Info.AFTRName == last.Info.AFTRName && last.AFTR.IsValid() {
			cur.AFTR = last.AFTR // a failed re-resolution keeps the address
		}
		if !cur.Same(last) {
			log.Info("DHCPv6 provisioning changed", "aftr-name", cur.Info.AFTRName, "aftr", cur.AFTR, "s46-lw", lwString(cur.Info.LW))
			onChange(cur)
		}
		last = cur
	}
}

// retryResolve is the wait after a failed resolution; tests shorten it.
var retryResolve = 30 * time.Second
