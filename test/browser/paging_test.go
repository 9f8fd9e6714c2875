package browser_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
)

// The topics table pages through the server's pages and filters on the
// server, so thousands of topics cost one page each.
func TestConsoleTopicsPageThroughTheServer(t *testing.T) {
	s := startServer(t)
	const n = 120
	for i := range n {
		body := fmt.Sprintf(`{"name":"test.team.t%03d","department":"team","owner":"carol"}`, i)
		resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v1/topics", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("create topic %d: status %d", i, resp.StatusCode)
		}
	}
	b := newBrowser(t, "http://"+s.HTTPAddr())
	b.open("/topics", "#topics-table")
	b.waitText(".pager-range", "1–50 of 120")
	if rows := eval[int](b, `document.querySelectorAll('#topics-table tbody tr').length`); rows != 50 {
		t.Errorf("first page has %d rows, want 50", rows)
	}
	b.click(`.pager [data-action="next"]`)
	b.waitText(".pager-range", "51–100 of 120")
	b.waitText("#topics-table", "test.team.t050")
	b.click(`.pager [data-action="next"]`)
	b.waitText(".pager-range", "101–120 of 120")
	if disabled := eval[bool](b, `document.querySelector('.pager [data-action="next"]').disabled`); !disabled {
		t.Error("Next is enabled on the last page")
	}
	b.click(`.pager [data-action="prev"]`)
	b.waitText(".pager-range", "51–100 of 120")

	// Filters go to the server and start again from the first page.
	b.fill("#topic-filters [name=name]", "t11")
	b.click("#topic-filters button[type=submit]")
	b.waitText(".pager-range", "1–10 of 10")
	if loc := eval[string](b, `location.search`); loc != "?name=t11" {
		t.Errorf("URL query after filtering = %q, want ?name=t11 (a link to the same view)", loc)
	}
	b.screenshot("topics-paged")
}
