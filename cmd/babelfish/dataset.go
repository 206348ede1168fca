package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/dataset"
	"babelfish.dev/babelfish/dataset/corpus"
	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/internal/tools"
)

func newDatasetCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dataset",
		Short: "Build, import, inspect and list sharded speech datasets in object storage",
		Long: `A dataset version is an immutable set of shards in the bucket under
datasets/<name>/<version>/, with a manifest (written last) that lists each
shard's size, record count and sha256, the languages, the audio format and how
the corpus was built. Each record holds every spoken rendering of one phrase:
all its languages and voices, so translation pairs are drawn inside a record.`,
	}
	c.AddCommand(newDatasetBuildCmd(), newDatasetImportCmd(), newDatasetInspectCmd(), newDatasetLsCmd())
	return c
}

func newDatasetBuildCmd() *cobra.Command {
	spec := dataset.DefaultSynthSpec()
	var (
		name, version string
		categories    []string
		unseenPairs   int
		shardMiB      int
		workers       int
		cldrDir       string
	)
	var sf *storeFlags
	c := &cobra.Command{
		Use:   "build --name NAME --version VERSION",
		Short: "Synthesize a multilingual parallel speech corpus with espeak-ng and CLDR",
		Long: `Build speaks parallel phrases from CLDR locale data (numbers, days, months,
relative days, country and language names) with espeak-ng in every language
both cover (about 100), with several voices, speeds and pitches, and writes
them as a dataset version. Held-out voices, phrases and language pairs become
the version's evaluation splits.

The build uses every core, shows progress with an ETA, and resumes: run the
same command again after an interruption and shards already in the bucket are
kept. The same spec gives a byte-identical manifest.`,
		Example: `  # ten languages, numbers 0..30 and every phrase category
  babelfish dataset build --name synth --version v1 \
    --languages de,en,es,fr,it,nl,pl,pt,ru,sv

  # a quick corpus for a smoke test
  babelfish dataset build --name tiny --version v1 --languages fr,de \
    --categories num,day --number-max 9 --variants m1,f1,m7 --unseen-voices m7 \
    --speeds 160 --pitches 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			for _, s := range categories {
				cat, err := corpus.ParseCategory(s)
				if err != nil {
					return fmt.Errorf("--categories: %w", err)
				}
				spec.Phrases.Categories = append(spec.Phrases.Categories, cat)
			}
			spec.ShardBytes = int64(shardMiB) << 20
			esPath, err := tools.SystemTool("espeak-ng")
			if err != nil {
				return err
			}
			cldr, err := corpus.OpenCLDR(cldrDir)
			if err != nil {
				return err
			}
			if unseenPairs > 0 {
				if len(spec.Languages) < 2 {
					return fmt.Errorf("--unseen-pairs %d needs --languages to list at least two languages", unseenPairs)
				}
				spec.UnseenPairs = dataset.DefaultUnseenPairs(spec.Languages, unseenPairs, spec.Seed)
			}
			m, err := dataset.BuildSynthetic(ctx, dataset.SynthBuild{
				Store: store, Name: name, Version: version, Spec: spec,
				Espeak: corpus.Espeak{Path: esPath}, CLDR: cldr,
				Workers: workers, Progress: cmd.ErrOrStderr(),
			})
			if err != nil {
				return err
			}
			printSummary(cmd, m)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "dataset name (required)")
	f.StringVar(&version, "version", "", "dataset version, immutable once built (required)")
	f.StringSliceVar(&spec.Languages, "languages", nil, "corpus language codes (default: every language espeak-ng and CLDR cover)")
	f.StringSliceVar(&categories, "categories", nil, "phrase categories: num, day, month, reldays, country, lang (default: all)")
	f.IntVar(&spec.Phrases.NumberMax, "number-max", spec.Phrases.NumberMax, "largest cardinal number spoken (from 0)")
	f.StringSliceVar(&spec.Variants, "variants", spec.Variants, "espeak-ng voice variants")
	f.IntSliceVar(&spec.Speeds, "speeds", spec.Speeds, "speaking rates, words per minute")
	f.IntSliceVar(&spec.Pitches, "pitches", spec.Pitches, "pitches, 0..99")
	f.StringSliceVar(&spec.UnseenVoices, "unseen-voices", spec.UnseenVoices, "variants held out of training (the unseen-voices split)")
	f.StringSliceVar(&spec.UnseenPhrases, "unseen-phrases", spec.UnseenPhrases, "phrase ids held out of training (the unseen-phrases split)")
	f.IntVar(&unseenPairs, "unseen-pairs", 0, "number of (source, target) directions held out of training, picked with the seed")
	f.Uint64Var(&spec.Seed, "seed", spec.Seed, "seed for every random choice of the build")
	f.IntVar(&spec.SampleRate, "sample-rate", spec.SampleRate, "sample rate of the stored audio, Hz")
	f.IntVar(&shardMiB, "shard-size", int(spec.ShardBytes>>20), "target shard size, MiB")
	f.IntVar(&workers, "workers", 0, "parallel synthesis processes (default: one per CPU)")
	f.StringVar(&cldrDir, "cldr-dir", corpus.DefaultCLDRDir, "CLDR common/ directory (Debian's unicode-cldr-core)")
	_ = c.MarkFlagRequired("name")
	_ = c.MarkFlagRequired("version")
	sf = addStoreFlags(c)
	return c
}

func newDatasetImportCmd() *cobra.Command {
	var (
		name, version string
		spec          dataset.ImportSpec
		shardMiB      int
	)
	var sf *storeFlags
	c := &cobra.Command{
		Use:   "import --name NAME --version VERSION --manifest FILE.tsv",
		Short: "Import a real corpus laid out as WAV files and a TSV manifest (CVSS-style)",
		Long: `Import reads a TSV manifest with the columns id, source language, source wav,
target language, target wav (paths relative to the manifest; a header line is
allowed) from a local directory, or from the bucket with --from-bucket, and
writes a dataset version. Rows sharing an id are one phrase, one record; the
target speech becomes the reference rendering of its language.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			spec.ShardBytes = int64(shardMiB) << 20
			im := dataset.Import{Store: store, Name: name, Version: version, Spec: spec}
			if !spec.FromBucket {
				dir, file := filepath.Split(spec.Manifest)
				if dir == "" {
					dir = "."
				}
				im.Files = os.DirFS(dir)
				im.Spec.Manifest = file
			}
			m, err := dataset.BuildImport(ctx, im)
			if err != nil {
				return err
			}
			printSummary(cmd, m)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "dataset name (required)")
	f.StringVar(&version, "version", "", "dataset version (required)")
	f.StringVar(&spec.Manifest, "manifest", "", "TSV manifest: a local path, or an object key with --from-bucket (required)")
	f.BoolVar(&spec.FromBucket, "from-bucket", false, "read the corpus from the bucket instead of local disk")
	f.IntVar(&spec.SampleRate, "sample-rate", 16000, "sample rate of the stored audio, Hz")
	f.Float64Var(&spec.MaxSeconds, "max-seconds", 60, "reject utterances longer than this")
	f.IntVar(&shardMiB, "shard-size", 64, "target shard size, MiB")
	_ = c.MarkFlagRequired("name")
	_ = c.MarkFlagRequired("version")
	_ = c.MarkFlagRequired("manifest")
	sf = addStoreFlags(c)
	return c
}

func newDatasetInspectCmd() *cobra.Command {
	var asJSON bool
	var sf *storeFlags
	c := &cobra.Command{
		Use:   "inspect NAME/VERSION",
		Short: "Show what a dataset version holds: languages, hours, phrases, splits, shards",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version, ok := strings.Cut(args[0], "/")
			if !ok {
				return fmt.Errorf("dataset %q: want NAME/VERSION, e.g. synth/v1 (babelfish dataset ls lists them)", args[0])
			}
			ctx := cmd.Context()
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			v, err := dataset.Open(ctx, store, name, version)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v.Manifest)
			}
			printSummary(cmd, v.Manifest)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LANGUAGE\tVOICE\tPHRASES\tUTTERANCES\tHOURS")
			for _, l := range v.Manifest.Languages {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f\n", l.Code, l.Voice, l.Phrases, l.Utterances, l.Seconds/3600)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the whole manifest as JSON")
	sf = addStoreFlags(c)
	return c
}

func newDatasetLsCmd() *cobra.Command {
	var sf *storeFlags
	c := &cobra.Command{
		Use:   "ls [NAME]",
		Short: "List datasets, or the versions of one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, err := sf.open(ctx)
			if err != nil {
				return err
			}
			names := args
			if len(names) == 0 {
				if names, err = dataset.List(ctx, store); err != nil {
					return err
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATASET\tVERSION\tLANGUAGES\tRECORDS\tUTTERANCES\tHOURS\tSOURCE")
			for _, n := range names {
				versions, err := dataset.Versions(ctx, store, n)
				if err != nil {
					return err
				}
				sort.Strings(versions)
				for _, ver := range versions {
					v, err := dataset.Open(ctx, store, n, ver)
					if err != nil {
						return err
					}
					m := v.Manifest
					var bi dataset.BuildInfo
					_ = json.Unmarshal(m.Build, &bi)
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.2f\t%s\n", n, ver, len(m.Languages), m.Records, m.Utterances, m.Seconds/3600, bi.Source)
				}
			}
			return tw.Flush()
		},
	}
	sf = addStoreFlags(c)
	return c
}

func printSummary(cmd *cobra.Command, m *shard.Manifest) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "dataset %s/%s: %d languages, %d records, %d utterances, %.2f hours, %d shards\n",
		m.Name, m.Version, len(m.Languages), m.Records, m.Utterances, m.Seconds/3600, len(m.Shards))
	fmt.Fprintf(out, "audio: %s %s %d Hz mono\n", m.Audio.Container, m.Audio.Encoding, m.Audio.SampleRate)
	fmt.Fprintf(out, "splits: unseen voices %d, unseen phrases %d, unseen pairs %d\n",
		len(m.Splits.UnseenVoices), len(m.Splits.UnseenPhrases), len(m.Splits.UnseenPairs))
}
