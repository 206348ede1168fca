package corpus

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Phrase is one concept rendered in one language.
type Phrase struct {
	ID   string // language-independent concept id, e.g. "num:42", "day:mon"
	Lang string // corpus language code
	Text string // what espeak-ng is asked to say
}

// Category names a family of concepts.
type Category string

// The categories CLDR and espeak-ng both cover.
const (
	Numbers     Category = "num"     // cardinal numbers, spoken from digits
	Days        Category = "day"     // days of the week
	Months      Category = "month"   // months of the year
	RelativeDay Category = "reldays" // yesterday, today, tomorrow
	Countries   Category = "country" // country names
	Languages   Category = "lang"    // language names
)

// PhraseSpec says which concepts the corpus holds.
type PhraseSpec struct {
	// Categories to include; empty means all.
	Categories []Category `json:"categories,omitempty"`
	// NumberMax is the largest cardinal number (from 0). espeak-ng reads
	// digits natively in each language, so numbers need no CLDR text.
	NumberMax int `json:"number_max"`
	// CountryCodes and LanguageCodes list which territories and languages
	// are named; empty means DefaultCountries() / DefaultLanguageNames().
	CountryCodes  []string `json:"country_codes,omitempty"`
	LanguageCodes []string `json:"language_codes,omitempty"`
}

// DefaultCountries returns widely known territories every CLDR locale names.
func DefaultCountries() []string {
	return []string{"BR", "CA", "CN", "DE", "EG", "ES", "FR", "GB", "IN", "IT", "JP", "KE", "MX", "NG", "RU", "US"}
}

// DefaultLanguageNames returns languages every CLDR locale names.
func DefaultLanguageNames() []string {
	return []string{"ar", "de", "en", "es", "fr", "hi", "it", "ja", "pt", "ru", "sw", "zh"}
}

var (
	dayOrder   = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	relDays    = []string{"-1", "0", "1"}
	categories = []Category{Numbers, Days, Months, RelativeDay, Countries, Languages}
)

// ParseCategory checks a category name.
func ParseCategory(s string) (Category, error) {
	for _, c := range categories {
		if string(c) == s {
			return c, nil
		}
	}
	names := make([]string, len(categories))
	for i, c := range categories {
		names[i] = string(c)
	}
	return "", fmt.Errorf("corpus: unknown phrase category %q: want one of %s", s, strings.Join(names, ", "))
}

func (s PhraseSpec) has(c Category) bool {
	if len(s.Categories) == 0 {
		return true
	}
	for _, x := range s.Categories {
		if x == c {
			return true
		}
	}
	return false
}

// Phrases renders the spec in one language. loc may be nil for a language
// CLDR lacks: only numbers are then produced. Concepts the locale does not
// name are left out, so a record simply lacks that language.
func Phrases(lang string, loc *Locale, spec PhraseSpec) []Phrase {
	var out []Phrase
	add := func(id, text string) {
		if text != "" {
			out = append(out, Phrase{ID: id, Lang: lang, Text: text})
		}
	}
	if spec.has(Numbers) {
		for n := 0; n <= spec.NumberMax; n++ {
			add(NumberID(n), strconv.Itoa(n))
		}
	}
	if loc == nil {
		return out
	}
	if spec.has(Days) {
		for _, d := range dayOrder {
			add("day:"+d, loc.Days[d])
		}
	}
	if spec.has(Months) {
		for m := 1; m <= 12; m++ {
			add("month:"+strconv.Itoa(m), loc.Months[strconv.Itoa(m)])
		}
	}
	if spec.has(RelativeDay) {
		for _, r := range relDays {
			add("reldays:"+r, loc.RelativeDay[r])
		}
	}
	if spec.has(Countries) {
		codes := spec.CountryCodes
		if len(codes) == 0 {
			codes = DefaultCountries()
		}
		for _, c := range sorted(codes) {
			add("country:"+c, loc.Territories[c])
		}
	}
	if spec.has(Languages) {
		codes := spec.LanguageCodes
		if len(codes) == 0 {
			codes = DefaultLanguageNames()
		}
		for _, c := range sorted(codes) {
			add("lang:"+c, loc.Languages[c])
		}
	}
	return out
}

// NumberID is the concept id of a cardinal number.
func NumberID(n int) string { return "num:" + strconv.Itoa(n) }

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
