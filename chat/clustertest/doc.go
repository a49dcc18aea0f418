// Package clustertest holds the tests of a multi-node deployment: several
// real roomnetd processes (the test binary re-executed, so that a test can
// kill one with SIGKILL) on one PostgreSQL and one redis-server, behind the
// HAProxy configuration shipped in deploy/haproxy.cfg, and the fault
// checker across three nodes. It has no code outside its tests.
package clustertest
