// Package app is kbootstrap's command-line entry point: Run builds the cobra
// command tree and executes it, returning an error that Main turns into the
// contract's exit codes (0 ok, 1 warnings, 2 failure or bad input).
package app
