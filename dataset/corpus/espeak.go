package corpus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Voice is one espeak-ng language voice.
type Voice struct {
	Code string // espeak-ng language code, e.g. "en-us", "cmn", "fr-fr"
	Name string // e.g. "English_(America)"
	// File is the voice file, e.g. "gmw/en-US", "iro/chr": what -v
	// resolves for every voice (some language codes, such as
	// "chr-US-Qaaa-x-west", are not accepted by -v).
	File string
}

// Speaker is how one utterance is spoken: an espeak-ng variant (the timbre,
// e.g. "m3", "f2"), a speed in words per minute and a pitch (0..99).
type Speaker struct {
	Variant string `json:"variant"`
	Speed   int    `json:"speed"`
	Pitch   int    `json:"pitch"`
}

// String is the speaker's stable id, used in record keys and splits.
func (s Speaker) String() string { return fmt.Sprintf("%s/s%d/p%d", s.Variant, s.Speed, s.Pitch) }

// Espeak runs the espeak-ng program.
type Espeak struct {
	Path string // the espeak-ng binary
}

// Voices lists the language voices espeak-ng has.
func (e Espeak) Voices(ctx context.Context) ([]Voice, error) {
	out, err := exec.CommandContext(ctx, e.Path, "--voices").Output()
	if err != nil {
		return nil, fmt.Errorf("corpus: %s --voices: %w", e.Path, err)
	}
	return parseVoices(out), nil
}

func parseVoices(out []byte) []Voice {
	var vs []Voice
	sc := bufio.NewScanner(bytes.NewReader(out))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if first { // header: Pty Language Age/Gender VoiceName File Other Languages
			first = false
			continue
		}
		if len(f) < 5 {
			continue
		}
		vs = append(vs, Voice{Code: f[1], Name: f[3], File: f[4]})
	}
	return vs
}

// voiceLocale names the corpus code and CLDR locale of espeak-ng voices
// whose names differ from CLDR's: espeak-ng says "cmn" and "fr-fr", CLDR "zh"
// and "fr"; espeak-ng's "pt" is European Portuguese, CLDR's "pt" Brazilian.
func voiceLocale(voice string) (code, locale string) {
	switch voice {
	case "cmn":
		return "zh", "zh"
	case "en-us":
		return "en", "en"
	case "fr-fr":
		return "fr", "fr"
	case "pt":
		return "pt", "pt_PT"
	case "pt-br":
		return "pt-br", "pt"
	}
	return "", ""
}

// Language is one corpus language: an espeak-ng voice paired with the CLDR
// locale that names its concepts.
type Language struct {
	Code   string `json:"code"`   // corpus code: "fr", "zh", "en-gb", "pt-br"
	Voice  string `json:"voice"`  // espeak-ng voice for -v: its file, e.g. "roa/fr", "sit/cmn"
	Locale string `json:"locale"` // CLDR locale, e.g. "fr", "en_GB"
}

// MatchLanguages pairs each espeak-ng voice with the most specific CLDR
// locale that has it (en-gb -> en_GB, es-419 -> es_419, af -> af). Voices
// without a CLDR locale (constructed and historical languages) and
// romanised-input duplicates ("cmn-latn-pinyin") are left out.
func MatchLanguages(voices []Voice, cldr *CLDR) []Language {
	seen := map[string]bool{}
	var out []Language
	for _, v := range voices {
		if seen[v.Code] || strings.Contains(v.Code, "-latn") {
			continue
		}
		seen[v.Code] = true
		code, loc := voiceLocale(v.Code)
		if code == "" {
			code = strings.ToLower(v.Code)
			loc = cldrName(v.Code)
			if !cldr.Has(loc) {
				loc = strings.SplitN(v.Code, "-", 2)[0]
			}
		}
		if !cldr.Has(loc) {
			continue
		}
		voice := v.File
		if voice == "" {
			voice = v.Code
		}
		out = append(out, Language{Code: code, Voice: voice, Locale: loc})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// ErrCrashed marks an espeak-ng run that died of a signal rather than
// exiting: some voices crash on some texts every time (espeak-ng 1.51's
// Greenlandic segfaults on "28"), which a build treats as that text being
// unspeakable in that voice.
var ErrCrashed = errors.New("espeak-ng crashed")

// Say speaks text with a voice and speaker and returns the WAV bytes
// (espeak-ng writes 22050 Hz PCM16 mono). Text goes through stdin, so no
// phrase is ever read as a flag.
func (e Espeak) Say(ctx context.Context, voice string, sp Speaker, text string) ([]byte, error) {
	v := voice
	if sp.Variant != "" {
		v += "+" + sp.Variant
	}
	args := []string{"-v", v, "--stdout"}
	if sp.Speed > 0 {
		args = append(args, "-s", strconv.Itoa(sp.Speed))
	}
	if sp.Pitch > 0 {
		args = append(args, "-p", strconv.Itoa(sp.Pitch))
	}
	cmd := exec.CommandContext(ctx, e.Path, args...)
	cmd.Stdin = strings.NewReader(text)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() == nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					err = fmt.Errorf("%w (%v)", ErrCrashed, err)
				}
			}
		}
		return nil, fmt.Errorf("corpus: espeak-ng -v %s %q: %w: %s", v, text, err, strings.TrimSpace(stderr.String()))
	}
	if len(out) < 44 {
		return nil, fmt.Errorf("corpus: espeak-ng -v %s %q wrote no audio", v, text)
	}
	return out, nil
}

// cldrName spells a BCP-47-ish code the way CLDR names its files:
// "en-gb" -> "en_GB", "es-419" -> "es_419", "sr-latn" -> "sr_Latn".
func cldrName(code string) string {
	parts := strings.Split(code, "-")
	for i := 1; i < len(parts); i++ {
		switch p := parts[i]; len(p) {
		case 2:
			parts[i] = strings.ToUpper(p)
		case 4:
			parts[i] = strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
		}
	}
	return strings.Join(parts, "_")
}

// Version is espeak-ng's version line ("eSpeak NG text-to-speech: 1.51 ..."),
// recorded in manifests; "unknown" if it cannot be run.
func (e Espeak) Version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, e.Path, "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	// Drop the data path espeak-ng appends: it names this machine's layout.
	line, _, _ = strings.Cut(line, "  Data at:")
	return strings.TrimSpace(line)
}
