package advisorylock

import (
	"github.com/jackc/pgx/v5"

	"github.com/advisorylock/advisorylock/internal/dbobject"
)

// FencingLiteral returns the constant by which the lock statements name the
// fencing sequence of schema.
func FencingLiteral(schema string) string {
	return regclassLiteral(pgx.Identifier{schema, FencingSequence}.Sanitize())
}

// CheckFencingSchema says what WithFencingSchema finds wrong with schema, or
// returns nil.
func CheckFencingSchema(schema string) error { return dbobject.CheckSchema(schema) }
