//! Round-trip ping-pong between two processes (filled in below).
