// Package shard is the on-storage format of dataset records: a shard is a
// sequence of self-delimiting records, each a small JSON header, the audio
// payloads it describes, and a CRC-32C over both, so a reader streams a shard
// front to back (WebDataset-style sequential reads) and names the shard and
// byte offset of any corruption.
//
// A record groups every aligned utterance of one phrase: all its languages,
// voices, speeds and pitches. Translation pairs are drawn inside a record.
package shard
