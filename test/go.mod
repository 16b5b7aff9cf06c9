module github.com/kbootstrap/kbootstrap/test

go 1.26.0

require github.com/kbootstrap/kbootstrap v0.0.0

require (
	github.com/kr/fs v0.1.0 // indirect
	github.com/pkg/sftp v1.13.12 // indirect
	go.yaml.in/yaml/v3 v3.0.4 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.47.0 // indirect
)

replace github.com/kbootstrap/kbootstrap => ../
