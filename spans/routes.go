package spans

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// ErrInvalidRoute is wrapped by every NewRoutes error.
var ErrInvalidRoute = errors.New("invalid route pattern")

// knownMethods are RFC 9110's methods plus PATCH (RFC 5789): the set the
// OpenTelemetry HTTP conventions name spans by. Anything else is "HTTP", so a
// client cannot mint span names.
var knownMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
	http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch,
}

const otherMethod = "HTTP"

// methodIndex returns the index of method in knownMethods, or len(knownMethods)
// for "HTTP". Methods are case-sensitive (RFC 9110 section 9.1).
func methodIndex(method string) int {
	for i, m := range knownMethods {
		if m == method {
			return i
		}
	}
	return len(knownMethods)
}

// routeNames holds a pattern's span names, one per known method and "HTTP", built
// once so naming a span allocates no string.
type routeNames [len(knownMethods) + 1]string

// noRoute is registered for every pattern: only the matched pattern is used.
var noRoute = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})

func newRoutes(patterns []string) (r *Routes, err error) {
	r = &Routes{
		mux:   http.NewServeMux(),
		names: make(map[string]*routeNames, len(patterns)),
	}
	for _, p := range patterns {
		if err := r.add(p); err != nil {
			return nil, err
		}
	}
	// On a miss ServeMux works out a 405's Allow list and a trailing-slash
	// redirect, allocating each time. A catch-all of our own turns misses into a
	// cheap match that has no names, so it still names by method. It is skipped
	// when the user's patterns already catch everything ("/", "/{x...}").
	if len(patterns) > 0 {
		func() {
			defer func() { _ = recover() }()
			r.mux.Handle("/", noRoute)
		}()
	}
	return r, nil
}

// add registers p. Matching is ServeMux's own, so wildcards, "{$}", "{name...}",
// precedence and conflicts behave exactly as users know them from net/http.
// ServeMux reports a bad or conflicting pattern by panicking; add turns that back
// into an error.
func (r *Routes) add(p string) (err error) {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w %q: must start with \"/\" (no method, no host)", ErrInvalidRoute, p)
	}
	defer func() {
		if v := recover(); v != nil {
			cause, ok := v.(error)
			if !ok {
				cause = fmt.Errorf("%v", v)
			}
			err = fmt.Errorf("%w %q: %w", ErrInvalidRoute, p, cause)
		}
	}()
	r.mux.Handle(p, noRoute)
	var names routeNames
	for i, m := range knownMethods {
		names[i] = m + " " + p
	}
	names[len(knownMethods)] = otherMethod + " " + p
	r.names[p] = &names
	return nil
}

// routeRequest is the request ServeMux needs to find a pattern, pooled because it
// escapes to the heap and SpanName runs for every span.
type routeRequest struct {
	req http.Request
	url url.URL
}

var routeRequests = sync.Pool{New: func() any { return new(routeRequest) }}

func (r *Routes) spanName(method, path string) string {
	i := methodIndex(method)
	if r != nil && len(r.names) > 0 && strings.HasPrefix(path, "/") {
		// The method is fixed to GET: patterns carry no method, and a real CONNECT
		// would make ServeMux skip its path cleaning.
		rr := routeRequests.Get().(*routeRequest)
		rr.url = url.URL{Path: path}
		rr.req = http.Request{Method: http.MethodGet, URL: &rr.url}
		_, pattern := r.mux.Handler(&rr.req)
		*rr = routeRequest{} // keep no path alive in the pool
		routeRequests.Put(rr)
		// ServeMux may return the path of a redirect target instead of a pattern;
		// only our own patterns may become names.
		if names, ok := r.names[pattern]; ok {
			return names[i]
		}
	}
	if i == len(knownMethods) {
		return otherMethod
	}
	return knownMethods[i]
}
