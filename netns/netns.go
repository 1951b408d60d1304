// Package netns runs code inside another network namespace.
//
// Linux binds a namespace to a thread, not a process, and a socket to the
// namespace of the thread that created it, for life. So the agent creates pod
// sockets (listeners, upstream dials) on a thread switched into the pod's netns
// and uses them from anywhere afterwards.
package netns
