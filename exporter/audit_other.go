//go:build !linux

package exporter

import (
	"context"
	"errors"

	"github.com/snatrace/snatrace/netns"
)

// LiveAudit needs Linux; elsewhere the audit fails at every refresh.
func LiveAudit(ns *netns.NS) AuditFunc {
	return func(context.Context) (AuditResult, error) {
		return AuditResult{}, errors.New("the live rule audit needs Linux")
	}
}

// LiveAuditor needs Linux.
type LiveAuditor struct{}

// NewLiveAuditor returns an auditor whose every call fails: it needs Linux.
func NewLiveAuditor(*netns.NS, string) *LiveAuditor { return &LiveAuditor{} }

// Audit fails: the live rule audit needs Linux.
func (*LiveAuditor) Audit(ctx context.Context) (AuditResult, error) { return LiveAudit(nil)(ctx) }

// Watch fails: following rule changes needs Linux.
func (*LiveAuditor) Watch(context.Context, func(string)) error {
	return errors.New("following rule changes needs Linux")
}
