// Command vcsim serves govmomi's vCenter simulator (the VPX model: datacenter DC0, cluster
// DC0_C0, datastore LocalDS_0, VMs such as DC0_C0_RP0_VM0) over TLS on 127.0.0.1, for the
// vSphere provider's tests. It prints the SDK URL on stdout once it listens and exits on
// SIGTERM or SIGINT, or, with -watch-stdin, when its standard input closes (so that it does not
// outlive a test run that was killed).
//
// Build in GOPATH mode against Debian's golang-github-vmware-govmomi-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o vcsim tests/vcsim/main.go
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: any free port)")
	username := flag.String("username", "", "the only user accepted (empty: any non-empty user and password)")
	password := flag.String("password", "", "that user's password")
	watchStdin := flag.Bool("watch-stdin", false, "exit when standard input reaches end of file")
	flag.Parse()

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		log.Fatalf("vcsim: creating the model: %v", err)
	}
	defer model.Remove()

	listen := &url.URL{Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(*port))}
	if *username != "" {
		listen.User = url.UserPassword(*username, *password)
	}
	model.Service.Listen = listen
	// An empty tls.Config makes the server use the simulator's built-in self-signed certificate.
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	defer server.Close()

	fmt.Printf("%s\n", server.URL.String())
	os.Stdout.Sync()

	done := make(chan os.Signal, 1)
	signal.Notify(done, syscall.SIGTERM, syscall.SIGINT)
	if *watchStdin {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			done <- syscall.SIGTERM
		}()
	}
	<-done
}
