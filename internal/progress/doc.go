// Package progress draws a one-line progress bar with rate and ETA for long
// work (corpus builds, training, uploads). On a terminal it redraws in place;
// elsewhere (CI logs, files) it prints a line at most every few seconds.
package progress
