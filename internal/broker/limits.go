package broker

import "unicode/utf8"

// Sizes of the free-text fields the broker stores, in characters (docs/api.md,
// "Limits"). Every one is shown in lists and kept for the life of its object: a
// 100,000-character owner made `dmq topic list` print a gigabyte. A longer value is
// refused (KindInvalid) before anything changes, except a nack reason, which a
// consumer's error message fills: it is cut to MaxNackReasonLen.
const (
	// MaxOwnerLen bounds a topic's owner and the names of who requested and who
	// decided it.
	MaxOwnerLen = 128
	// MaxDepartmentLen bounds a topic's department.
	MaxDepartmentLen = 64
	// MaxPurposeLen bounds a topic's purpose.
	MaxPurposeLen = 1024
	// MaxReasonLen bounds the reason of a decision (approve, reject, disable).
	MaxReasonLen = 1024
	// MaxNackReasonLen is the longest nack reason kept; the rest is cut.
	MaxNackReasonLen = 1024
	// MaxClientIDLen bounds a client id (bytes, as before); MaxHostLen and
	// MaxSDKVersionLen what a client says about itself in heartbeats, and
	// MaxClientTopics how many topics it may list there as produced or consumed.
	MaxClientIDLen   = 256
	MaxHostLen       = 255
	MaxSDKVersionLen = 64
	MaxClientTopics  = 1000
)

// checkText refuses a value of field longer than max characters.
func checkText(field, v string, max int) error {
	if len(v) <= max { // at most max bytes: at most max characters
		return nil
	}
	if n := utf8.RuneCountInString(v); n > max {
		return errorf(KindInvalid, "%s is %d characters long; the limit is %d", field, n, max)
	}
	return nil
}

// checkTexts checks field/value/limit triples in order.
func checkTexts(fields ...textField) error {
	for _, f := range fields {
		if err := checkText(f.name, f.value, f.max); err != nil {
			return err
		}
	}
	return nil
}

type textField struct {
	name, value string
	max         int
}

// cutMark ends a value cutText shortened.
const cutMark = "… (cut)"

// cutText shortens v to at most max characters, ending with cutMark.
func cutText(v string, max int) string {
	if len(v) <= max || utf8.RuneCountInString(v) <= max {
		return v
	}
	keep, n := max-utf8.RuneCountInString(cutMark), 0
	for i := range v {
		if n == keep {
			return v[:i] + cutMark
		}
		n++
	}
	return v
}

// checkClientID refuses a client id longer than MaxClientIDLen bytes.
func checkClientID(id string) error {
	if len(id) > MaxClientIDLen {
		return errorf(KindInvalid, "client id is %d bytes long; the limit is %d", len(id), MaxClientIDLen)
	}
	return nil
}
