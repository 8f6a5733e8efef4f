// Command web is the backend pod of the real-node test (make cluster-test): an HTTP server
// that answers every request with its pod's name, so the test sees which pod a Service
// address reached.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := ":8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	name, _ := os.Hostname()
	srv := &http.Server{
		Addr:              addr,
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "pod %s\n", name)
		}),
	}
	log.Fatal(srv.ListenAndServe())
}
