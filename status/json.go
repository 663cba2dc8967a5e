package status

import (
	"encoding/json"
	"io"
)

// WriteJSON prints Reports as a JSON array, indented, each with its
// schema: always an array, however many processes answered, so that a
// script reads one shape.
func WriteJSON(w io.Writer, reports []Report) error {
	if reports == nil {
		reports = []Report{}
	}
	for i := range reports {
		reports[i].Schema = Schema
	}
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(reports)
}
