// Package inventory loads, validates and selects from kbootstrap's inventory
// file (kbootstrap.yaml): the cluster's name, version and endpoints, SSH
// defaults, and its nodes with their roles. Every error names the file, the
// line and the field. Endpoint is kbootstrap's one control-plane endpoint
// rule.
package inventory
