// Package playbooks is kbootstrap's ansible-free playbook engine and the
// playbooks shipped with it.
//
// A playbook is one YAML play (see "Playbook format" in the design notes):
// name, hosts (all, a role or node names), serial, vars, tasks and handlers.
// Each task names exactly one module (shell, command, copy, template, file,
// lineinfile, sysctl, modprobe, apt, service, wait_for, fetch, upload,
// image_import, debug) with its arguments in its own map, and optionally
// when, become, register, ignore_errors, no_log and notify. Parse is strict:
// an unknown key or a bad value is an error naming the file, the line and
// the task.
//
// Run gathers facts once per node (one remote command), then runs the play
// batch by batch (serial), task by task across the hosts of the batch in
// parallel (bounded by the concurrency), and flushes notified handlers at
// the end of each batch. Every module is idempotent and reports ok, changed,
// failed or skipped; in check mode it reports what would change and changes
// nothing. Modules are Go over node.Node and keep round-trips low: most
// tasks are one remote command, a file is sent only when its hash or
// attributes differ.
//
// Strings in module arguments, when and changed_when are Go text/template
// over .vars, .facts, .registered (results of register), .host (the
// inventory node), .inventory (its nodes by role and the control-plane
// endpoint) and .check. The library never prints: progress goes to a
// Reporter, one event per host per task.
package playbooks
