package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/controller"
)

// flagsFromJobEnv sets the trainer's flags from the TrainingJob spec that
// the Kubernetes controller and the local executor put in every rank's
// environment (BABELFISH_JOB, BABELFISH_DATASET, BABELFISH_DATASET_VERSION,
// BABELFISH_MODEL_CONFIG), so `babelfish trainer` starts the same way
// under both. It sets only flags given neither on the command line nor as
// BABELFISH_TRAINER_* (call it after flagsFromEnv).
//
// spec.model maps languages -> --langs, steps -> --steps, batchSize ->
// --global-batch, learningRate -> --lr, seed -> --seed; each key of
// spec.model.parameters names a trainer flag (e.g. "enc": "64,64",
// "units": 32, "checkpoint-every": 20); an unknown key is an error.
func flagsFromJobEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	set := func(flag, value, from string) {
		fl := fs.Lookup(flag)
		if fl == nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a trainer flag", from, flag))
			return
		}
		if fl.Changed {
			return
		}
		if err := fs.Set(flag, value); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", from, value, err))
		}
	}
	// The job's name, not the controller's namespace/name id: checkpoint
	// keys are checked names.
	if v, ok := lookup(controller.EnvJob); ok && v != "" {
		set("job", v, controller.EnvJob)
	}
	if v, ok := lookup(controller.EnvDataset); ok && v != "" {
		set("dataset", v, controller.EnvDataset)
	}
	if v, ok := lookup(controller.EnvDatasetVersion); ok && v != "" {
		set("dataset-version", v, controller.EnvDatasetVersion)
	}
	if v, ok := lookup(controller.EnvCheckpointInterval); ok && v != "" {
		set("checkpoint-interval", v, controller.EnvCheckpointInterval)
	}
	raw, ok := lookup(controller.EnvModelConfig)
	if !ok || raw == "" {
		return errors.Join(errs...)
	}
	var mc v1alpha1.ModelConfig
	if err := json.Unmarshal([]byte(raw), &mc); err != nil {
		return fmt.Errorf("%s: %w", controller.EnvModelConfig, err)
	}
	from := controller.EnvModelConfig + " "
	if len(mc.Languages) > 0 {
		set("langs", strings.Join(mc.Languages, ","), from+"languages")
	}
	if mc.Steps > 0 {
		set("steps", strconv.FormatInt(mc.Steps, 10), from+"steps")
	}
	if mc.BatchSize > 0 {
		set("global-batch", strconv.Itoa(int(mc.BatchSize)), from+"batchSize")
	}
	if mc.LearningRate != nil {
		set("lr", strconv.FormatFloat(*mc.LearningRate, 'g', -1, 64), from+"learningRate")
	}
	if mc.Seed > 0 {
		set("seed", strconv.FormatInt(mc.Seed, 10), from+"seed")
	}
	if mc.Parameters != nil && len(mc.Parameters.Raw) > 0 {
		var params map[string]any
		if err := json.Unmarshal(mc.Parameters.Raw, &params); err != nil {
			errs = append(errs, fmt.Errorf("%sparameters: want an object of trainer flags: %w", from, err))
			return errors.Join(errs...)
		}
		keys := make([]string, 0, len(params))
		for k := range params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field := from + "parameters." + k
			if strings.HasPrefix(k, "s3-") || k == "job" || k == "metrics-listen" {
				errs = append(errs, fmt.Errorf("%s: not settable from a job's parameters", field))
				continue
			}
			v, err := paramString(params[k])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field, err))
				continue
			}
			set(k, v, field)
		}
	}
	return errors.Join(errs...)
}

// paramString writes a JSON parameter as a flag value: numbers, strings
// and booleans as they are, lists comma-separated.
func paramString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := paramString(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("value %v: want a number, string, boolean or list of them", v)
	}
}
