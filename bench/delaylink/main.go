// Command delaylink is a userspace "long fat link" for the benchmark harness:
// the kernel here has no netem, so delay and loss between two network
// namespaces are made by a program instead.
//
//	delaylink -a NAME -b NAME [-delay 20ms] [-loss 0.01] [-seed N] [-limit 20000] [-mtu 1500]
//
// It creates two tap devices, -a and -b, in the current network namespace,
// prints "ready" on a line of its own to stdout, and then carries every
// Ethernet frame read from one tap to the other, each held -delay (one way)
// from the moment it was read and kept in order. -loss drops that fraction of
// the frames of each direction, independently, from a PRNG seeded by -seed so
// that runs repeat. -limit bounds the frames queued per direction; a frame
// beyond it is dropped and counted.
//
// The taps may be moved into other namespaces (ip link set NAME netns X) and
// configured there: the file descriptors, and so the link, stay valid. A move
// sets a tap down, so each end needs `ip link set NAME up` where it lands.
// They are not persistent and vanish when the process exits; deleting a
// namespace destroys the tap in it, and delaylink then exits 1 (after the
// summary), so stop it first when its exit status matters.
//
// The taps get -mtu (default 1500); do not raise it on them afterwards, as
// larger frames are dropped (counted as oversize). Each direction preallocates
// -limit slots of -mtu+19 bytes (about 30 MB at the defaults), touched as the
// ring cycles. The link has no rate limit of its own: its capacity is what
// the CPU moves (1.5-2 Gbit/s of 1500-byte frames on two cores), and the queue
// in front of that bottleneck is the sending tap's txqueuelen (1000 frames;
// the kernel drops beyond it), not -limit, which only bounds frames in flight.
//
// On SIGTERM or SIGINT it prints one line per direction to stderr, e.g.
//
//	delaylink: dla->dlb forwarded=1234 lost=12 overflow=0 oversize=0 write-errors=0
//
// (lost: dropped by -loss; overflow: dropped by -limit; oversize: larger than
// -mtu allows; write-errors: refused by the kernel, e.g. while the receiving
// tap is down) and exits 0.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// slack is how early a frame may leave: a sleep ends late anyway (the
// runtime's timers are about millisecond-grained when idle), so a frame this
// close to its due time is written rather than slept for.
const slack = int64(100 * time.Microsecond)

// epoch is the origin of clock; time.Since reads the monotonic clock, so
// wall-clock steps never reorder or stall frames.
var epoch = time.Now()

func clock() int64 { return int64(time.Since(epoch)) }

func main() {
	a := flag.String("a", "", "name of the first tap `device` (required)")
	b := flag.String("b", "", "name of the second tap `device` (required)")
	delay := flag.Duration("delay", 0, "one-way delay of every frame (RTT = 2×delay)")
	loss := flag.Float64("loss", 0, "fraction of frames dropped, independently in each direction")
	seed := flag.Uint64("seed", 1, "seed of the loss PRNG")
	limit := flag.Int("limit", 20000, "most frames queued per direction; more are dropped")
	mtu := flag.Int("mtu", 1500, "MTU the taps are created with; frames larger than it are dropped")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		fail("unexpected arguments %q", flag.Args())
	case *a == "" || *b == "" || *a == *b:
		fail("-a and -b must name two different devices")
	case len(*a) >= unix.IFNAMSIZ || len(*b) >= unix.IFNAMSIZ:
		fail("device names are at most %d bytes", unix.IFNAMSIZ-1)
	case *delay < 0:
		fail("-delay must not be negative")
	case !(*loss >= 0 && *loss <= 1):
		fail("-loss must be within [0, 1]")
	case *limit < 1:
		fail("-limit must be at least 1")
	case *mtu < 68 || *mtu > 65535:
		fail("-mtu must be within [68, 65535]")
	}

	// Catch the signals before anything else: a harness may send SIGTERM the
	// moment it reads "ready", and the default action would skip the summary.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)

	tapA, err := openTap(*a, *mtu)
	if err != nil {
		fail("%v", err)
	}
	tapB, err := openTap(*b, *mtu)
	if err != nil {
		fail("%v", err)
	}
	// The largest frame a tap hands over: the MTU, the Ethernet header, one
	// VLAN tag; plus one byte, so that a frame filling a whole slot is known
	// to be too large (the kernel truncates what does not fit).
	frame := *mtu + 14 + 4 + 1
	dirs := []*direction{
		newDirection(*a+"->"+*b, tapA, tapB, *delay, *loss, rand.NewPCG(*seed, 1), *limit, frame),
		newDirection(*b+"->"+*a, tapB, tapA, *delay, *loss, rand.NewPCG(*seed, 2), *limit, frame),
	}
	readErr := make(chan error, len(dirs))
	for _, d := range dirs {
		go func() { readErr <- d.read() }()
		go d.write()
	}
	fmt.Println("ready")

	code := 0
	select {
	case <-sig:
	case err := <-readErr:
		// A tap that cannot be read any more (deleted under us) ends the link.
		fmt.Fprintf(os.Stderr, "delaylink: %v\n", err)
		code = 1
	}
	for _, d := range dirs {
		fmt.Fprintf(os.Stderr, "delaylink: %s forwarded=%d lost=%d overflow=%d oversize=%d write-errors=%d\n",
			d.name, d.forwarded.Load(), d.lost.Load(), d.overflow.Load(), d.oversize.Load(), d.writeErrors.Load())
	}
	os.Exit(code)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "delaylink: "+format+"\n", args...)
	os.Exit(2)
}

// openTap creates the tap device name and returns it as a pollable file. The
// fd is non-blocking, so os.NewFile registers it with Go's poller and a
// reader waits in epoll instead of holding an OS thread.
func openTap(name string, mtu int) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	// IFF_NO_PI: bare Ethernet frames, no packet-info header. IFF_TUN_EXCL:
	// fail if the name exists rather than attach to someone's persistent tap.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("create tap %s: a device of that name exists", name)
		}
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	if err := setMTU(name, mtu); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: set MTU %d: %w", name, mtu, err)
	}
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// setMTU sets the MTU of the device name in the current namespace; the MTU
// stays with the device when it moves to another.
func setMTU(name string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	return unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr)
}

// direction carries the frames of one tap to the other through a ring of
// preallocated frame buffers: nothing is allocated per frame.
//
// The ring is single-producer, single-consumer. Slots [head, tail) hold frames
// waiting for their due time; only read advances tail, only write advances
// head, both counting up forever (the slot is the count modulo the ring's
// size). read fills a slot's bytes, size and due time before it moves tail
// past it, so the atomic store of tail publishes them to write, and write's
// atomic store of head hands the slot back.
type direction struct {
	name     string
	from, to *os.File
	delay    int64 // ns
	loss     float64
	rng      *rand.Rand // read's alone

	frame int     // bytes per slot: one more than the largest frame
	buf   []byte  // the slots, back to back
	size  []int   // bytes of the frame in each slot
	due   []int64 // clock() at which each slot's frame is written
	n     uint64  // slots
	head  atomic.Uint64
	tail  atomic.Uint64
	wake  chan struct{} // read tells an idle write that tail moved

	forwarded, lost, overflow, oversize, writeErrors atomic.Uint64
}

func newDirection(name string, from, to *os.File, delay time.Duration, loss float64, src rand.Source, limit, frame int) *direction {
	return &direction{
		name: name, from: from, to: to, delay: int64(delay), loss: loss, rng: rand.New(src),
		frame: frame,
		buf:   make([]byte, limit*frame), // the kernel's zeroed pages: touched only as the ring fills
		size:  make([]int, limit),
		due:   make([]int64, limit),
		n:     uint64(limit),
		wake:  make(chan struct{}, 1),
	}
}

// slot returns the buffer of the slot that count c maps to.
func (d *direction) slot(c uint64) []byte {
	i := int(c % d.n)
	return d.buf[i*d.frame : (i+1)*d.frame]
}

// read takes frames from the source tap into the ring until the tap fails
// (EBADFD once its device is gone, e.g. with its namespace).
func (d *direction) read() error {
	// A frame must be read even when the ring is full, to drop it; it lands
	// here.
	scratch := make([]byte, d.frame)
	var tail uint64
	for {
		buf, inRing := scratch, tail-d.head.Load() < d.n
		if inRing {
			buf = d.slot(tail)
		}
		n, err := d.from.Read(buf)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err) // err names the tap and the call
		}
		due := clock() + d.delay
		// One draw per frame, whatever becomes of it, so the loss pattern
		// depends only on the seed and the order of frames.
		lost := d.rng.Float64() < d.loss
		switch {
		case n >= d.frame:
			d.oversize.Add(1)
		case lost:
			d.lost.Add(1)
		case !inRing && tail-d.head.Load() >= d.n:
			d.overflow.Add(1)
		default:
			if !inRing {
				// The ring drained while this read waited.
				copy(d.slot(tail), buf[:n])
			}
			i := tail % d.n
			d.size[i], d.due[i] = n, due
			tail++
			d.tail.Store(tail)
			select {
			case d.wake <- struct{}{}:
			default: // a wake-up is already pending
			}
		}
	}
}

// write puts each queued frame on the destination tap once it is due. Frames
// leave in order and their due times never decrease, so only the head frame
// needs a timer: write sleeps until it is due, then sends every frame that is
// due by then in one go.
func (d *direction) write() {
	var head uint64
	for {
		tail := d.tail.Load()
		if head == tail {
			<-d.wake
			continue
		}
		now := clock()
		for ; head != tail; head++ {
			i := head % d.n
			if d.due[i]-now > slack {
				// Writing the batch took time: look at the clock again
				// before sleeping on a stale reading.
				if now = clock(); d.due[i]-now > slack {
					time.Sleep(time.Duration(d.due[i] - now))
					break
				}
			}
			if _, err := d.to.Write(d.slot(head)[:d.size[i]]); err != nil {
				// EIO while the receiving tap is down (it is, between a move
				// and the harness's `ip link set up`): the frame is lost,
				// like on a wire without a peer. Only a first error other
				// than that is shown; the summary counts them all.
				if d.writeErrors.Add(1) == 1 && !errors.Is(err, unix.EIO) {
					fmt.Fprintf(os.Stderr, "delaylink: %s: write: %v\n", d.name, err)
				}
			} else {
				d.forwarded.Add(1)
			}
			d.head.Store(head + 1)
		}
	}
}
