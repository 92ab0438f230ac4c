// Package procstat reads this process's CPU time.
package procstat
