package broker

import (
	"slices"
	"strings"

	"github.com/dmqio/dmq/internal/meta"
)

// Topic statuses. Only approved topics accept publishes and subscriptions.
const (
	StatusPending  = "pending"
	StatusApproved = "approved"
	StatusRejected = "rejected"
	StatusDisabled = "disabled"
)

// CheckStatus refuses a status filter that names no status ("" filters nothing),
// so that a misspelt filter fails instead of matching nothing.
func CheckStatus(s string) error {
	switch s {
	case "", StatusPending, StatusApproved, StatusRejected, StatusDisabled:
		return nil
	}
	return errorf(KindInvalid, "status %q is not pending, approved, rejected or disabled", s)
}

// environment returns the env part of a topic name (env.dept.name).
func environment(name string) string {
	env, _, _ := strings.Cut(name, ".")
	return env
}

// status returns the topic's status; topics stored before the registry
// existed count as approved.
func status(ti meta.Topic) string {
	if ti.Status == "" {
		return StatusApproved
	}
	return ti.Status
}

// admissionStatus decides the status of a new topic from the policy.
func (b *Broker) admissionStatus(ti *meta.Topic) {
	if slices.Contains(b.cfg.AutoApproveEnvs, environment(ti.Name)) {
		ti.Status, ti.DecidedBy, ti.DecidedAtMs = StatusApproved, "policy", ti.CreatedAtMs
		ti.DecisionReason = "environment " + environment(ti.Name) + " is approved on creation"
		return
	}
	ti.Status = StatusPending
}

// usable reports why a topic cannot take publishes or subscriptions.
func (t *topic) usable() error {
	ti := t.snapshot()
	switch status(ti) {
	case StatusApproved:
		return nil
	case StatusPending:
		return errorf(KindPrecondition, "topic %q is pending approval (requested by %q); an administrator must approve it first", t.name, ti.RequestedBy)
	case StatusRejected:
		return errorf(KindPrecondition, "topic %q was rejected by %q: %s", t.name, ti.DecidedBy, ti.DecisionReason)
	default:
		return errorf(KindPrecondition, "topic %q is disabled by %q: %s", t.name, ti.DecidedBy, ti.DecisionReason)
	}
}

// TopicFilter selects topics in ListTopics; empty fields match everything.
type TopicFilter struct {
	Department, Owner, Environment, Status, NameContains string
}

func (f TopicFilter) match(ti TopicInfo) bool {
	return (f.Department == "" || ti.Department == f.Department) &&
		(f.Owner == "" || ti.Owner == f.Owner) &&
		(f.Environment == "" || ti.Environment == f.Environment) &&
		(f.Status == "" || ti.Status == f.Status) &&
		(f.NameContains == "" || strings.Contains(ti.Name, f.NameContains))
}

// Decision is an approve, reject or disable of a topic.
type Decision struct {
	Topic, By, Reason string
}

// ApproveTopic lets a pending, rejected or disabled topic be used.
func (b *Broker) ApproveTopic(d Decision) (TopicInfo, error) {
	return b.decide(d, StatusApproved, []string{StatusPending, StatusRejected, StatusDisabled})
}

// RejectTopic refuses a pending topic.
func (b *Broker) RejectTopic(d Decision) (TopicInfo, error) {
	return b.decide(d, StatusRejected, []string{StatusPending})
}

// DisableTopic stops an approved topic; its messages stay stored.
func (b *Broker) DisableTopic(d Decision) (TopicInfo, error) {
	return b.decide(d, StatusDisabled, []string{StatusApproved})
}

func (b *Broker) decide(d Decision, to string, from []string) (TopicInfo, error) {
	if strings.TrimSpace(d.By) == "" {
		return TopicInfo{}, errorf(KindInvalid, "say who decides (the approver's name)")
	}
	if err := checkTexts(textField{"the decider's name", d.By, MaxOwnerLen}, textField{"reason", d.Reason, MaxReasonLen}); err != nil {
		return TopicInfo{}, err
	}
	t, err := b.topic(d.Topic)
	if err != nil {
		return TopicInfo{}, err
	}
	t.infoMu.Lock()
	defer t.infoMu.Unlock()
	cur := status(t.info)
	if !slices.Contains(from, cur) {
		return TopicInfo{}, errorf(KindPrecondition, "topic %q is %s; it cannot become %s", d.Topic, cur, to)
	}
	if to == StatusApproved && d.By == t.info.RequestedBy && !b.cfg.AllowSelfApproval {
		return TopicInfo{}, errorf(KindPermission, "%q requested topic %q and cannot approve it too; another administrator must", d.By, d.Topic)
	}
	next := t.info
	next.Status, next.DecidedBy, next.DecidedAtMs, next.DecisionReason = to, d.By, b.Now().UnixMilli(), d.Reason
	if err := b.meta.PutTopic(next); err != nil {
		return TopicInfo{}, wrap(KindInternal, err, "store decision on topic %q", d.Topic)
	}
	t.info = next
	b.logger.Info("topic "+to, "topic", d.Topic, "by", d.By, "reason", d.Reason)
	return t.describeLocked(), nil
}
