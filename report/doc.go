// Package report holds what checks and audits produce: findings with a stable
// check id, a severity and a message, their table, JSON and Prometheus
// renderings, and the exit code they imply (0 ok, 1 warnings, 2 failures).
package report
