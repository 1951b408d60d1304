package spans

import (
	"errors"
	"strings"
	"testing"
)

func TestSpanName(t *testing.T) {
	r, err := NewRoutes([]string{
		"/users/{id}",
		"/users/{id}/orders/{order}",
		"/users/me",
		"/static/",
		"/files/{path...}",
		"/exact/{$}",
		"/",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path, want string
	}{
		{"GET", "/users/42", "GET /users/{id}"},
		{"POST", "/users/42/orders/7", "POST /users/{id}/orders/{order}"},
		{"GET", "/users/me", "GET /users/me"}, // the most specific pattern wins
		{"GET", "/static/css/site.css", "GET /static/"},
		{"GET", "/static/", "GET /static/"},
		{"GET", "/files/a/b/c.txt", "GET /files/{path...}"},
		{"GET", "/exact/", "GET /exact/{$}"},
		{"GET", "/exact/more", "GET /"},
		{"GET", "/users//42", "GET /users/{id}"}, // cleaned as ServeMux cleans it
		{"GET", "/unknown", "GET /"},
		{"PATCH", "/users/1", "PATCH /users/{id}"},
		{"HEAD", "/users/1", "HEAD /users/{id}"},
		{"DELETE", "/users/1", "DELETE /users/{id}"},
		{"PROPFIND", "/users/1", "HTTP /users/{id}"},
		{"get", "/users/1", "HTTP /users/{id}"}, // methods are case-sensitive
		{"", "/users/1", "HTTP /users/{id}"},
		{"OPTIONS", "*", "OPTIONS"},
		{"CONNECT", "", "CONNECT"},
		{"GET", "users/1", "GET"},
	}
	for _, tt := range tests {
		if got := r.SpanName(tt.method, tt.path); got != tt.want {
			t.Errorf("SpanName(%q, %q) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestSpanNameWithoutCatchAll(t *testing.T) {
	r, err := NewRoutes([]string{"/users/{id}", "/static/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/other/thing", "GET"},
		{"BREW", "/other/thing", "HTTP"},
		{"GET", "/users/1/extra", "GET"},
		// ServeMux answers a redirect to /static/ here; the name is the pattern's.
		{"GET", "/static", "GET /static/"},
	} {
		if got := r.SpanName(tt.method, tt.path); got != tt.want {
			t.Errorf("SpanName(%q, %q) = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestSpanNameNilAndEmpty(t *testing.T) {
	var nilRoutes *Routes
	empty, err := NewRoutes(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Routes{nilRoutes, empty} {
		for method, want := range map[string]string{"GET": "GET", "CONNECT": "CONNECT", "TRACE": "TRACE", "FOO": "HTTP"} {
			if got := r.SpanName(method, "/users/1"); got != want {
				t.Errorf("SpanName(%q) = %q, want %q", method, got, want)
			}
		}
		if n := testing.AllocsPerRun(100, func() { _ = r.SpanName("GET", "/users/1") }); n != 0 {
			t.Errorf("SpanName without routes allocates %v times, want 0", n)
		}
	}
}

func TestNewRoutesErrors(t *testing.T) {
	for _, tt := range []struct {
		patterns []string
		bad      string
	}{
		{[]string{"/ok", "/users/{id"}, "/users/{id"},
		{[]string{"GET /users"}, "GET /users"},
		{[]string{"example.com/users"}, "example.com/users"},
		{[]string{""}, ""},
		{[]string{"/users/{id}", "/users/{name}"}, "/users/{name}"},
		{[]string{"/a", "/a"}, "/a"},
		{[]string{"/a/{x...}/b"}, "/a/{x...}/b"},
		{[]string{"/a/{1x}"}, "/a/{1x}"},
	} {
		r, err := NewRoutes(tt.patterns)
		if !errors.Is(err, ErrInvalidRoute) || r != nil {
			t.Errorf("NewRoutes(%q) = %v, %v; want ErrInvalidRoute", tt.patterns, r, err)
			continue
		}
		if !strings.Contains(err.Error(), `"`+tt.bad+`"`) {
			t.Errorf("NewRoutes(%q) error %q does not name %q", tt.patterns, err, tt.bad)
		}
	}
}

// Whatever the request, the name is a method or method and pattern: never the path.
func FuzzSpanName(f *testing.F) {
	patterns := []string{"/users/{id}", "/static/", "/files/{p...}", "/x/{$}"}
	r, err := NewRoutes(patterns)
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, m := range append(knownMethods[:], otherMethod) {
		allowed[m] = true
		for _, p := range patterns {
			allowed[m+" "+p] = true
		}
	}
	f.Add("GET", "/users/1")
	f.Add("GET", "/static/../../etc/passwd")
	f.Add("FOO", "/files/a%2Fb")
	f.Add("GET", "//x/./")
	f.Add("GET", "/users/{id}")
	f.Fuzz(func(t *testing.T, method, path string) {
		if name := r.SpanName(method, path); !allowed[name] {
			t.Errorf("SpanName(%q, %q) = %q: not a bounded name", method, path, name)
		}
	})
}
