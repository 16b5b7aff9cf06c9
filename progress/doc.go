// Package progress prints what a long operation is doing: one line per node
// and step ("✓ Joining control plane cp2 (41.2s)", "✗ ...: error"), with a
// spinner line for the steps under way only on a terminal. Every command that
// shows progress writes through one Status, so that its lines never cut into
// the spinner. It imports nothing of kbootstrap.
package progress
