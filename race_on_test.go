//go:build race

package main

// raceEnabled tells tests whose measurements the race detector distorts to skip.
const raceEnabled = true
