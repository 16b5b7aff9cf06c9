// Package playbook is `kbootstrap playbook`: run an ansible-free playbook
// (a file or a shipped one) on the selected nodes, and list the shipped
// playbooks. The engine is package playbooks (ansible-free-playbooks/).
package playbook
