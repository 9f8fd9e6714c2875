package broker

import "strconv"

// Message ids on the wire are decimal log offsets (delayed messages have
// their own ids, see FormatDelayID). Every API formats and parses them here.

// FormatOffset is the message id of a log offset.
func FormatOffset(off uint64) string { return strconv.FormatUint(off, 10) }

// FormatOffsets returns the message ids of n offsets, cut from one string
// (two allocations for a batch instead of one per id). offset(i) gives the
// i-th offset, or false for an entry without one, whose id stays "".
func FormatOffsets(n int, offset func(i int) (uint64, bool)) []string {
	var digits []byte
	ends := make([]int, n)
	for i := range n {
		if off, ok := offset(i); ok {
			digits = strconv.AppendUint(digits, off, 10)
		}
		ends[i] = len(digits)
	}
	all := string(digits)
	ids := make([]string, n)
	start := 0
	for i, end := range ends {
		ids[i], start = all[start:end], end
	}
	return ids
}

// ParseOffset turns a message id back into its log offset. Only the form
// FormatOffset gives is accepted (no leading zeros), so one message has
// one id.
func ParseOffset(id string) (uint64, error) {
	off, err := strconv.ParseUint(id, 10, 64)
	if err != nil || (len(id) > 1 && id[0] == '0') {
		return 0, errorf(KindInvalid, "message id %q is not a DMQ message id", id)
	}
	return off, nil
}
