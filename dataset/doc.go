// Package dataset builds speech corpora into immutable, sharded dataset
// versions in object storage and streams them to training ranks
// deterministically and resumably.
//
// Not built yet: issue 3 brings it.
package dataset
