// Package certs is the `kbootstrap certs` command: `check` audits the PKI of
// the control planes (or of local directories) with package pki; `renew` and
// `schedule` come with a later issue.
package certs
