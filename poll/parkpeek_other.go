//go:build !linux

package poll

import "net"

// connGone cannot look without reading here: a parked poll whose client
// left ends when its wait does.
func connGone(net.Conn) bool { return false }

// goneWatch is Linux only; elsewhere nothing watches parked connections.
type goneWatch struct{}

func newGoneWatch(<-chan struct{}) *goneWatch { return nil }
func (g *goneWatch) add(*parked)              {}
func (g *goneWatch) remove(*parked)           {}
