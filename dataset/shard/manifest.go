package shard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
)

// ManifestVersion is the format version a manifest is written with.
const ManifestVersion = 1

// Manifest describes one immutable dataset version: it is written after all
// its shards, so a version without one does not exist.
type Manifest struct {
	FormatVersion int             `json:"format_version"`
	Name          string          `json:"name"`
	Version       string          `json:"version"`
	Audio         AudioFormat     `json:"audio"`
	Languages     []LanguageStats `json:"languages"`
	Shards        []ShardInfo     `json:"shards"`
	Records       int             `json:"records"`
	Utterances    int             `json:"utterances"`
	Seconds       float64         `json:"seconds"`
	Splits        Splits          `json:"splits"`
	// Build records how the corpus was made (source, phrase spec, voices,
	// seed): enough to build it again byte for byte.
	Build json.RawMessage `json:"build,omitempty"`
}

// AudioFormat is the format of every utterance's audio.
type AudioFormat struct {
	Container  string `json:"container"` // "wav"
	Encoding   string `json:"encoding"`  // "pcm16"
	SampleRate int    `json:"sample_rate"`
	Channels   int    `json:"channels"`
}

// LanguageStats counts one language's audio.
type LanguageStats struct {
	Code       string  `json:"code"`
	Voice      string  `json:"voice,omitempty"`
	Locale     string  `json:"locale,omitempty"`
	Phrases    int     `json:"phrases"`
	Utterances int     `json:"utterances"`
	Seconds    float64 `json:"seconds"`
}

// ShardInfo is one shard object.
type ShardInfo struct {
	Key        string `json:"key"` // relative to the version prefix, e.g. "shards/00003"
	Split      string `json:"split"`
	Bytes      int64  `json:"bytes"`
	Records    int    `json:"records"`
	Utterances int    `json:"utterances"`
	SHA256     string `json:"sha256"`
}

// Splits says what is held out for evaluation. Unseen phrases live in their
// own records (Record.Split); unseen voices and language pairs are filters
// applied inside records when pairs are drawn.
type Splits struct {
	UnseenPhrases []string    `json:"unseen_phrases,omitempty"` // phrase ids
	UnseenVoices  []string    `json:"unseen_voices,omitempty"`  // speaker ids
	UnseenPairs   [][2]string `json:"unseen_pairs,omitempty"`   // (source, target) language codes
}

// Split names.
const (
	SplitTrain         = "train"
	SplitUnseenPhrases = "unseen_phrases"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateName checks a dataset name or version: lower-case letters, digits,
// '.', '_' and '-', 1 to 63 characters, so it is safe in object keys.
func ValidateName(field, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s %q: want 1 to 63 of a-z 0-9 . _ - starting with a letter or digit", field, s)
	}
	return nil
}

// Validate checks the manifest's own consistency.
func (m *Manifest) Validate() error {
	if m.FormatVersion != ManifestVersion {
		return fmt.Errorf("manifest format_version %d: this reader knows %d", m.FormatVersion, ManifestVersion)
	}
	if err := ValidateName("name", m.Name); err != nil {
		return err
	}
	if err := ValidateName("version", m.Version); err != nil {
		return err
	}
	recs, utts := 0, 0
	for _, s := range m.Shards {
		if len(s.SHA256) != 64 {
			return fmt.Errorf("manifest shard %s: sha256 %q is not 64 hex digits", s.Key, s.SHA256)
		}
		recs += s.Records
		utts += s.Utterances
	}
	if recs != m.Records || utts != m.Utterances {
		return fmt.Errorf("manifest: shards hold %d records and %d utterances, header says %d and %d", recs, utts, m.Records, m.Utterances)
	}
	return nil
}

// LanguageCodes lists the manifest's languages, sorted.
func (m *Manifest) LanguageCodes() []string {
	out := make([]string, len(m.Languages))
	for i, l := range m.Languages {
		out[i] = l.Code
	}
	sort.Strings(out)
	return out
}
