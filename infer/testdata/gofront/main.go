// A Go net/http app that does NOT forward trace headers: for each request it
// calls the back end with the same X-Request-Id. Goroutines move between OS
// threads, so inference must never link its calls. Built by the inference tests.
package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	port, back := os.Args[1], "http://"+os.Args[2]+":"+os.Args[3]+"/work"
	maxDelay, _ := strconv.ParseFloat(os.Args[4], 64)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rid := r.Header.Get("X-Request-Id")
		calls, _ := strconv.Atoi(r.Header.Get("X-Calls"))
		var got []string
		for range calls {
			time.Sleep(time.Duration(rand.Float64() * maxDelay * float64(time.Second)))
			req, _ := http.NewRequest("GET", back, nil)
			req.Header.Set("X-Request-Id", rid)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = append(got, string(b))
		}
		fmt.Fprintf(w, "front %s %s", rid, strings.Join(got, ","))
	})
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
