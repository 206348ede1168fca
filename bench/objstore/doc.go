// Command objstore measures the objstore client against plain minio-go on
// the same MinIO in the same run: put and get throughput for one large
// object and for many small ones. It prints
//
//	bench objstore ratio_put_large=… ratio_get_large=… ratio_put_small=… ratio_get_small=…
//
// where each ratio is the median over rounds of objstore's throughput over
// minio-go's in that round. The two sides run back to back and alternate
// which goes first, so drift in the machine hits both alike. Other lines
// give the MB/s of every round and the CPU seconds each side cost the
// client and the MinIO server.
//
// Usage: go run ./bench/objstore [-large-size 100MiB] [-small-count 1000] [-rounds 5]
package main
