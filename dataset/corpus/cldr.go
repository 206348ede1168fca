package corpus

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultCLDRDir is where Debian's unicode-cldr-core package puts CLDR's
// "common" tree (main/*.xml locales, supplemental/ data).
const DefaultCLDRDir = "/usr/share/unicode/cldr/common"

// CLDR reads locales from a CLDR "common" tree, resolving each through its
// parents (es_419 -> es, nb -> no) so a regional locale names everything its
// parent does.
type CLDR struct {
	dir     string
	parents map[string]string
}

// OpenCLDR reads the parent-locale table of the CLDR tree at dir.
func OpenCLDR(dir string) (*CLDR, error) {
	p := filepath.Join(dir, "supplemental", "supplementalData.xml")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("corpus: CLDR data not found (%v): is unicode-cldr-core installed? run make tools", err)
	}
	var sup struct {
		Parents []struct {
			Parent  string `xml:"parent,attr"`
			Locales string `xml:"locales,attr"`
		} `xml:"parentLocales>parentLocale"`
	}
	if err := xml.Unmarshal(b, &sup); err != nil {
		return nil, fmt.Errorf("corpus: parse %s: %w", p, err)
	}
	c := &CLDR{dir: dir, parents: map[string]string{}}
	for _, pl := range sup.Parents {
		for _, l := range strings.Fields(pl.Locales) {
			if _, ok := c.parents[l]; !ok { // the first table (no component) wins
				c.parents[l] = pl.Parent
			}
		}
	}
	return c, nil
}

// Has reports whether the tree has a locale file for code.
func (c *CLDR) Has(code string) bool {
	_, err := os.Stat(filepath.Join(c.dir, "main", code+".xml"))
	return err == nil
}

func (c *CLDR) parent(code string) string {
	if p, ok := c.parents[code]; ok {
		return p
	}
	if i := strings.LastIndexByte(code, '_'); i > 0 {
		return code[:i]
	}
	return "root"
}

// Locale loads code and its parents up to (not including) root, the child's
// values overriding its parents'.
func (c *CLDR) Locale(code string) (*Locale, error) {
	var chain []*Locale
	for l := code; l != "root" && l != ""; l = c.parent(l) {
		loc, err := loadLocaleFile(filepath.Join(c.dir, "main"), l)
		if err != nil {
			if len(chain) > 0 && errors.Is(err, ErrNoLocale) {
				break
			}
			return nil, err
		}
		chain = append(chain, loc)
	}
	out := chain[len(chain)-1]
	out.Code = code
	for i := len(chain) - 2; i >= 0; i-- {
		merge(out.Days, chain[i].Days)
		merge(out.Months, chain[i].Months)
		merge(out.Territories, chain[i].Territories)
		merge(out.Languages, chain[i].Languages)
		merge(out.RelativeDay, chain[i].RelativeDay)
	}
	return out, nil
}

// Locale holds the parts of one CLDR locale the corpus speaks.
type Locale struct {
	Code        string            // CLDR locale code, e.g. "fr", "zh"
	Days        map[string]string // "mon" -> "lundi"
	Months      map[string]string // "1" -> "janvier"
	Territories map[string]string // "FR" -> "France"
	Languages   map[string]string // "de" -> "allemand"
	RelativeDay map[string]string // "-1" -> "hier"
}

// ldml mirrors the few elements of a CLDR main/*.xml file that are read.
type ldml struct {
	Languages   []cldrItem `xml:"localeDisplayNames>languages>language"`
	Territories []cldrItem `xml:"localeDisplayNames>territories>territory"`
	Calendars   []struct {
		Type   string `xml:"type,attr"`
		Months []struct {
			Type   string `xml:"type,attr"`
			Widths []struct {
				Type  string     `xml:"type,attr"`
				Items []cldrItem `xml:"month"`
			} `xml:"monthWidth"`
		} `xml:"months>monthContext"`
		Days []struct {
			Type   string `xml:"type,attr"`
			Widths []struct {
				Type  string     `xml:"type,attr"`
				Items []cldrItem `xml:"day"`
			} `xml:"dayWidth"`
		} `xml:"days>dayContext"`
	} `xml:"dates>calendars>calendar"`
	Fields []struct {
		Type     string     `xml:"type,attr"`
		Relative []cldrItem `xml:"relative"`
	} `xml:"dates>fields>field"`
}

type cldrItem struct {
	Type  string `xml:"type,attr"`
	Alt   string `xml:"alt,attr"`
	Draft string `xml:"draft,attr"`
	Text  string `xml:",chardata"`
}

// ErrNoLocale reports a locale that CLDR does not have.
var ErrNoLocale = errors.New("corpus: no such CLDR locale")

// loadLocaleFile reads one CLDR locale file from dir (main/). Only plain,
// non-draft-"unconfirmed" values without an alt variant are kept, so every
// language gets the standard rendering of each concept.
func loadLocaleFile(dir, code string) (*Locale, error) {
	p := filepath.Join(dir, code+".xml")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q (looked for %s; is unicode-cldr-core installed? run make tools)", ErrNoLocale, code, p)
	}
	if err != nil {
		return nil, err
	}
	var doc ldml
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("corpus: parse CLDR %s: %w", p, err)
	}
	loc := &Locale{
		Code:        code,
		Days:        map[string]string{},
		Months:      map[string]string{},
		Territories: keep(doc.Territories),
		Languages:   keep(doc.Languages),
		RelativeDay: map[string]string{},
	}
	for _, cal := range doc.Calendars {
		if cal.Type != "gregorian" {
			continue
		}
		// Stand-alone forms are what a word spoken on its own uses; fall back
		// to format forms where a locale has only those.
		for _, ctx := range []string{"format", "stand-alone"} {
			for _, mc := range cal.Months {
				if mc.Type != ctx {
					continue
				}
				for _, w := range mc.Widths {
					if w.Type == "wide" {
						merge(loc.Months, keep(w.Items))
					}
				}
			}
			for _, dc := range cal.Days {
				if dc.Type != ctx {
					continue
				}
				for _, w := range dc.Widths {
					if w.Type == "wide" {
						merge(loc.Days, keep(w.Items))
					}
				}
			}
		}
	}
	for _, f := range doc.Fields {
		if f.Type == "day" {
			merge(loc.RelativeDay, keep(f.Relative))
		}
	}
	return loc, nil
}

func keep(items []cldrItem) map[string]string {
	m := make(map[string]string, len(items))
	for _, it := range items {
		t := strings.TrimSpace(it.Text)
		if it.Alt != "" || it.Draft == "unconfirmed" || t == "" {
			continue
		}
		m[it.Type] = t
	}
	return m
}

func merge(dst, src map[string]string) {
	for k, v := range src {
		dst[k] = v
	}
}
