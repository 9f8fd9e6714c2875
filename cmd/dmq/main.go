// Command dmq is the DMQ broker and its command-line client in one binary:
// `dmq server` runs a broker; every other subcommand talks to one.
package main

import (
	"os"

	"github.com/dmqio/dmq/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
