package kube

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// markerEnv is set in the environment of every process the cluster starts
// (and so of containerd's shims), so a later start can find and end what a
// crashed run left behind. Kubernetes' own test control planes
// (internal/testenv) run the same binaries without it and are left alone.
const markerEnv = "BABELFISH_KUBE_CLUSTER"

// Chain prefixes of the iptables rules the kubelet, kube-proxy and the CNI
// plugins write, and of the cluster's own egress guard.
var chainPrefixes = []string{"KUBE-", "CNI-", "BABELFISH-"}

// cgroupParent is the kubelet's cgroup of pods under each v1 controller.
const cgroupParent = "kubepods"

// markedProcs lists the processes, other than this one, that carry
// markerEnv, with their command lines.
func markedProcs() (map[int]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte(markerEnv+"=")) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		procs[pid] = strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return procs, nil
}

// killMarked SIGKILLs every process that carries markerEnv, except this one.
func killMarked() (int, error) {
	procs, err := markedProcs()
	n := 0
	for pid := range procs {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n, err
}

// cgroupDirs returns every directory of the kubepods tree under each
// mounted v1 controller, deepest first.
func cgroupDirs() []string {
	var dirs []string
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, c := range ctrls {
		root := filepath.Join("/sys/fs/cgroup", c.Name(), cgroupParent)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// killCgroups SIGKILLs every process left in the pods' cgroups (containers
// whose shim died) and removes those cgroups.
func killCgroups() error {
	dirs := cgroupDirs()
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	var errs []error
	for _, d := range dirs {
		var err error
		for range 50 { // a killed process leaves its cgroup a moment later
			if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below any of prefixes,
// deepest first.
func mountsUnder(prefixes ...string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var points []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		for _, p := range prefixes {
			if p != "" && (mp == p || strings.HasPrefix(mp, strings.TrimRight(p, "/")+"/")) {
				points = append(points, mp)
				break
			}
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, nil
}

// unmountUnder detaches every mount at or below each prefix, deepest first.
func unmountUnder(prefixes ...string) error {
	points, err := mountsUnder(prefixes...)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// netnsDirs is where containerd's CRI pins pod network namespaces.
var netnsDirs = []string{"/var/run/netns", "/run/netns"}

// removePodNetns unmounts and removes the CRI's cni-* network namespaces.
func removePodNetns() error {
	var errs []error
	for _, dir := range netnsDirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), "cni-") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove network namespace %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteLink removes a network interface if it exists.
func deleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link delete %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeChains deletes every iptables chain whose name starts with one of
// chainPrefixes, and the rules of other chains that jump to them, in one
// iptables-restore --noflush per table.
func removeChains() error {
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		return fmt.Errorf("iptables-save: %w", err)
	}
	script := chainRemovalScript(string(out))
	if script == "" {
		return nil
	}
	cmd := exec.Command("iptables-restore", "--noflush")
	cmd.Stdin = strings.NewReader(script)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

func ours(chain string) bool {
	for _, p := range chainPrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// chainRemovalScript turns iptables-save output into an iptables-restore
// input that removes our chains: jumps into them from other chains are
// deleted, then our chains are flushed and deleted.
func chainRemovalScript(save string) string {
	var b strings.Builder
	var table string
	var jumps, chains []string
	flush := func() {
		if table == "" || (len(jumps) == 0 && len(chains) == 0) {
			return
		}
		fmt.Fprintf(&b, "*%s\n", table)
		for _, j := range jumps {
			fmt.Fprintf(&b, "-D %s\n", j)
		}
		for _, c := range chains {
			fmt.Fprintf(&b, "-F %s\n", c)
		}
		for _, c := range chains {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			flush()
			table, jumps, chains = strings.TrimPrefix(line, "*"), nil, nil
		case strings.HasPrefix(line, ":"):
			name := strings.Fields(line[1:])[0]
			if ours(name) {
				chains = append(chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || ours(f[1]) {
				continue // flushed with its chain
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					jumps = append(jumps, strings.TrimPrefix(line, "-A "))
					break
				}
			}
		}
	}
	flush()
	return b.String()
}

// sysctl reads and writes /proc/sys values by their dotted name.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(value), 0o644); err != nil {
		return fmt.Errorf("kube: sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// Leftovers lists what a cluster left on this machine: processes, the
// bridge and route link, pod network namespaces, mounts under dir or the
// runtime directory, iptables chains, and pod cgroups. Empty after a clean
// Stop.
func Leftovers(dir string) []string {
	var left []string
	procs, _ := markedProcs()
	for pid, cmd := range procs {
		left = append(left, fmt.Sprintf("process %d: %s", pid, cmd))
	}
	for _, l := range []string{bridgeName, routeLink} {
		if _, err := net.InterfaceByName(l); err == nil {
			left = append(left, "network link "+l)
		}
	}
	for _, d := range netnsDirs {
		ns, _ := os.ReadDir(d)
		for _, e := range ns {
			if strings.HasPrefix(e.Name(), "cni-") {
				left = append(left, "network namespace "+filepath.Join(d, e.Name()))
			}
		}
	}
	mounts, _ := mountsUnder(dir, runDir)
	for _, mp := range mounts {
		left = append(left, "mount "+mp)
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(line, ":") && ours(strings.Fields(line[1:])[0]) {
				left = append(left, "iptables chain "+strings.Fields(line[1:])[0])
			}
		}
	}
	for _, d := range cgroupDirs() {
		left = append(left, "cgroup "+d)
	}
	if _, err := os.Stat(runDir); err == nil {
		left = append(left, "directory "+runDir)
	}
	return left
}
