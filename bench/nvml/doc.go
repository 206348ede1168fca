// Command nvml measures what the GPU agent costs: scrape latency of
// /metrics and the agent's CPU (sampling at -interval plus one scrape per
// interval) for a fake 8-GPU DGX A100, beside a baseline process serving an
// empty Prometheus registry, measured in the same run the same way.
//
// Both run as child processes of the bench so that their CPU time (read from
// /proc/PID/stat) is theirs alone, not the scraper's.
//
//	go run ./bench/nvml [-scrapes 60] [-interval 1s] [-kind dgxa100]
package main
