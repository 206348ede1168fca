// Package corpus builds the synthetic multilingual speech corpus: parallel
// phrases taken from CLDR locale data (numbers, days, months, country and
// language names, relative days), spoken by espeak-ng in every language both
// cover, with several voices, speeds and pitches.
//
// A phrase is a concept with one rendering per language ("day:mon" is
// "lundi", "Montag", "月曜日"); the corpus groups every spoken rendering of a
// concept into one record, so translation pairs are drawn inside a record.
package corpus
