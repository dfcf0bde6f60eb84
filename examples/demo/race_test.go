//go:build race

package main

// raceEnabled: the tests build the demo with -race too.
const raceEnabled = true
