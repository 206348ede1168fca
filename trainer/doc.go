// Package trainer runs one rank of a data-parallel training job of the
// direct speech-to-speech translation model (package model).
//
// Every rank streams its partition of each global batch from a dataset
// version (dataset/loader), draws one translation pair per sample inside the
// sample's record, computes summed losses and gradients on its share,
// all-reduces them over the collective ring (trainer/collective) and takes
// the same Adam step as every other rank, so N ranks train exactly like one
// rank with the same global batch (up to float summation order). Which pair
// a sample yields depends only on (seed, epoch, global sample index), never
// on rank or world size.
//
// The unit codebook (k-means over canonical speech of the training split) is
// learned deterministically on rank 0 and broadcast. Rank 0 writes
// checkpoints to checkpoints/<job>/<step>/ as objstore artifacts (weights
// with codebook and config, optimizer state, data cursor, metrics; the
// manifest last); every rank restores the latest committed one on start.
// A stop request (SIGTERM) is agreed on by all ranks through the same
// all-reduce, so they finish the same step, checkpoint and return nil.
//
// Each example has a sample of its target positions scored per step
// (Config.Positions, drawn from a seed of the sample's place in the data
// order, so ranks agree) and its previous-unit dropout drawn from the same
// seed. With Config.Budget, rank 0 measures the step rate as it goes and
// sets the job's step count and the end of the cosine decay so that the
// run fills the wall-clock budget; the plan reaches the other ranks through
// the step's all-reduce and is kept in checkpoints.
//
// Evaluate scores a checkpoint on a dataset version's three test splits
// (unseen voices, unseen phrases, unseen language pairs) by concept accuracy
// and MCD-DTW beside the vocoder floor and the copy-the-input baseline
// (model/eval), and SaveEval stores the report and its flat metrics under
// the checkpoint (checkpoints/<job>/<step>/eval/<name>/), where a promotion
// policy reads them.
package trainer
