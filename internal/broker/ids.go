package broker

import "strconv"

// Message ids on the wire are decimal log offsets (delayed messages have
// their own ids, see FormatDelayID). Every API formats and parses them here.

// FormatOffset is the message id of a log offset.
func FormatOffset(off uint64) string { return strconv.FormatUint(off, 10) }

// AppendOffset appends the message id of a log offset to dst.
func AppendOffset(dst []byte, off uint64) []byte { return strconv.AppendUint(dst, off, 10) }

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
