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
