// Command kubeup starts Babelfish's real single-node Kubernetes cluster
// (internal/kube) for a person, with the project's images imported, and
// keeps it up until interrupted:
//
//	make cluster                      # or: go run ./internal/kube/kubeup
//	export KUBECONFIG=...             # the path it prints
//	kubectl get nodes
//	helm install bf charts/babelfish -f charts/babelfish/ci/local-cluster-values.yaml
//
// Ctrl-C stops the cluster and removes everything it made on the machine;
// its state directory (etcd, images, logs) stays, so the next start is warm.
// After a crash, `kubeup --clean` removes what the dead cluster left.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"babelfish.dev/babelfish/internal/kube"
	"babelfish.dev/babelfish/internal/tools"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kubeup:", err)
		os.Exit(1)
	}
}

func run() error {
	toolsDir, err := tools.Dir()
	if err != nil {
		return err
	}
	dir := flag.String("dir", filepath.Join(filepath.Dir(toolsDir), "cluster"), "the cluster's state directory (kept across starts)")
	images := flag.String("images", filepath.Join(filepath.Dir(toolsDir), "images"), "directory to build the OCI image archives into with scripts/ociimage.sh; empty: import none")
	tag := flag.String("tag", "dev", "tag of the babelfish and minio images")
	clean := flag.Bool("clean", false, "remove what a cluster that was not stopped left on this machine, then exit")
	verbose := flag.Bool("v", false, "log each part's start")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: kubeup [flags]\n\nStarts a real single-node Kubernetes cluster (etcd, kube-apiserver, controller-manager,\nscheduler, kubelet on containerd+runc, kube-proxy, CoreDNS) and keeps it up until Ctrl-C.\nNeeds root and `make tools`.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *clean {
		return kube.Clean(ctx, log)
	}
	opts := []kube.Option{kube.WithDir(*dir), kube.WithLogger(log), kube.WithNodeLabels(map[string]string{"nvidia.com/gpu.present": "true"})}
	if *images != "" {
		began := time.Now()
		set, err := kube.BuildImages(ctx, *images, *tag)
		if err != nil {
			return err
		}
		log.Info("images built", "dir", *images, "took", time.Since(began).Round(time.Millisecond))
		opts = append(opts, kube.WithImages(set.Archives()...))
	}
	cl, err := kube.Start(ctx, opts...)
	if err != nil {
		return err
	}
	fmt.Printf("cluster up in %v\n\n  export KUBECONFIG=%s\n\nlogs: %s\nCtrl-C stops it.\n", cl.StartupDuration().Round(time.Millisecond), cl.Kubeconfig(), cl.LogDir())
	<-ctx.Done()
	fmt.Println("stopping the cluster")
	return cl.Stop(context.Background())
}
