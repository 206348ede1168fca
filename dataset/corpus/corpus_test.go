package corpus

import (
	"context"
	"strings"
	"testing"

	"babelfish.dev/babelfish/internal/testenv"
)

func openCLDR(t *testing.T) *CLDR {
	t.Helper()
	c, err := OpenCLDR(DefaultCLDRDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLocaleInheritsFromParents(t *testing.T) {
	c := openCLDR(t)
	tests := []struct {
		locale, key, want string
		get               func(*Locale) map[string]string
	}{
		{"fr", "mon", "lundi", func(l *Locale) map[string]string { return l.Days }},
		{"de", "1", "Januar", func(l *Locale) map[string]string { return l.Months }},
		{"ja", "FR", "フランス", func(l *Locale) map[string]string { return l.Territories }},
		{"fr", "-1", "hier", func(l *Locale) map[string]string { return l.RelativeDay }},
		// nb's own file is nearly empty: its days come from its parent "no".
		{"nb", "mon", "mandag", func(l *Locale) map[string]string { return l.Days }},
		// es_419 inherits from es.
		{"es_419", "1", "enero", func(l *Locale) map[string]string { return l.Months }},
	}
	for _, tt := range tests {
		loc, err := c.Locale(tt.locale)
		if err != nil {
			t.Fatalf("%s: %v", tt.locale, err)
		}
		if got := tt.get(loc)[tt.key]; got != tt.want {
			t.Errorf("%s[%s] = %q, want %q", tt.locale, tt.key, got, tt.want)
		}
	}
	if _, err := c.Locale("xx_nope"); err == nil || !strings.Contains(err.Error(), "xx_nope") {
		t.Errorf("unknown locale: err = %v, want one naming it", err)
	}
}

func TestParseVoices(t *testing.T) {
	out := "Pty Language       Age/Gender VoiceName          File                 Other Languages\n" +
		" 5  af              --/M      Afrikaans          gmw/af\n" +
		" 5  cmn             --/M      Chinese_(Mandarin) sit/cmn              (zh-cmn 5)(zh 5)\n" +
		"\n"
	got := parseVoices([]byte(out))
	want := []Voice{{"af", "Afrikaans", "gmw/af"}, {"cmn", "Chinese_(Mandarin)", "sit/cmn"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("parseVoices = %v, want %v", got, want)
	}
}

func TestMatchLanguages(t *testing.T) {
	c := openCLDR(t)
	voices := []Voice{{Code: "cmn"}, {Code: "cmn-latn-pinyin"}, {Code: "en-gb"}, {Code: "en-us"}, {Code: "es-419"},
		{Code: "fr-fr", File: "roa/fr"}, {Code: "jbo"}, {Code: "pt"}, {Code: "pt-br"}, {Code: "yue"}, {Code: "yue"}}
	got := MatchLanguages(voices, c)
	want := map[string]Language{
		"zh":     {"zh", "cmn", "zh"},
		"en-gb":  {"en-gb", "en-gb", "en_GB"},
		"en":     {"en", "en-us", "en"},
		"es-419": {"es-419", "es-419", "es_419"},
		"fr":     {"fr", "roa/fr", "fr"},
		"pt":     {"pt", "pt", "pt_PT"},
		"pt-br":  {"pt-br", "pt-br", "pt"},
		"yue":    {"yue", "yue", "yue"},
	}
	if len(got) != len(want) {
		t.Fatalf("MatchLanguages = %v, want %d languages (jbo and the pinyin duplicate left out)", got, len(want))
	}
	for _, l := range got {
		if want[l.Code] != l {
			t.Errorf("language %s = %+v, want %+v", l.Code, l, want[l.Code])
		}
	}
}

// TestEveryEspeakLanguage is the coverage figure of the corpus: how many
// languages espeak-ng and CLDR both cover on this machine, each of them
// spoken once with a corpus variant, so a voice -v does not resolve fails
// here rather than hours into a full build.
func TestEveryEspeakLanguage(t *testing.T) {
	path, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := Espeak{Path: path}.Voices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := openCLDR(t)
	langs := MatchLanguages(vs, c)
	t.Logf("espeak-ng voices %d, corpus languages %d", len(vs), len(langs))
	if len(langs) < 100 {
		t.Errorf("only %d languages covered by both espeak-ng and CLDR, want >= 100", len(langs))
	}
	for _, l := range langs {
		loc, err := c.Locale(l.Locale)
		if err != nil {
			t.Fatal(err)
		}
		// Every language names at least the weekdays and months.
		ps := Phrases(l.Code, loc, PhraseSpec{Categories: []Category{Days, Months}})
		if len(ps) < 19 {
			t.Errorf("%s (%s): %d day and month phrases, want 19", l.Code, l.Locale, len(ps))
			continue
		}
		wav, err := Espeak{Path: path}.Say(context.Background(), l.Voice, Speaker{Variant: "f2", Speed: 180, Pitch: 60}, ps[0].Text)
		if err != nil || len(wav) < 1000 {
			t.Errorf("%s: espeak-ng -v %s: %d bytes, %v", l.Code, l.Voice, len(wav), err)
		}
	}
}

func TestPhrases(t *testing.T) {
	c := openCLDR(t)
	fr, err := c.Locale("fr")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		loc  *Locale
		spec PhraseSpec
		want int
		has  Phrase
	}{
		{"numbers only", fr, PhraseSpec{Categories: []Category{Numbers}, NumberMax: 9}, 10, Phrase{"num:7", "fr", "7"}},
		{"days", fr, PhraseSpec{Categories: []Category{Days}}, 7, Phrase{"day:sun", "fr", "dimanche"}},
		{"months", fr, PhraseSpec{Categories: []Category{Months}}, 12, Phrase{"month:12", "fr", "décembre"}},
		{"countries", fr, PhraseSpec{Categories: []Category{Countries}, CountryCodes: []string{"DE", "JP"}}, 2, Phrase{"country:DE", "fr", "Allemagne"}},
		{"no CLDR: numbers only", nil, PhraseSpec{NumberMax: 4}, 5, Phrase{"num:4", "fr", "4"}},
		{"all", fr, PhraseSpec{NumberMax: 20}, 21 + 7 + 12 + 3 + 16 + 12, Phrase{"reldays:1", "fr", "demain"}},
	}
	for _, tt := range tests {
		ps := Phrases("fr", tt.loc, tt.spec)
		if len(ps) != tt.want {
			t.Errorf("%s: %d phrases, want %d", tt.name, len(ps), tt.want)
		}
		found := false
		for _, p := range ps {
			found = found || p == tt.has
		}
		if !found {
			t.Errorf("%s: %+v missing from %v", tt.name, tt.has, ps)
		}
	}
	if _, err := ParseCategory("weather"); err == nil || !strings.Contains(err.Error(), "num") {
		t.Errorf("ParseCategory(weather) = %v, want an error listing the categories", err)
	}
}

func TestSay(t *testing.T) {
	path, err := testenv.SystemTool("espeak-ng")
	if err != nil {
		t.Fatal(err)
	}
	e := Espeak{Path: path}
	wav, err := e.Say(context.Background(), "fr-fr", Speaker{Variant: "m3", Speed: 160, Pitch: 40}, "-12")
	if err != nil {
		t.Fatal(err)
	}
	if string(wav[:4]) != "RIFF" || len(wav) < 8000 {
		t.Errorf("espeak-ng wrote %d bytes starting %q, want a WAV of speech", len(wav), wav[:4])
	}
	if _, err := e.Say(context.Background(), "xx-nope", Speaker{}, "1"); err == nil {
		t.Error("unknown voice: no error")
	}
}
