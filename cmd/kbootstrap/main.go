// Command kbootstrap bootstraps and looks after kubeadm clusters over SSH.
package main

import (
	"os"

	"github.com/kbootstrap/kbootstrap/cmd/kbootstrap/app"
)

func main() {
	os.Exit(app.Main())
}
