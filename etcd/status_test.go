package etcd

import (
	"fmt"
	"testing"
)

func TestEndpointStatusProblem(t *testing.T) {
	for _, tc := range []struct {
		st   EndpointStatus
		want string
	}{
		{EndpointStatus{Endpoint: "e"}, ""},
		{EndpointStatus{Err: "context deadline exceeded"}, "context deadline exceeded"},
		{EndpointStatus{Errors: []string{"a", "b"}, Alarms: []string{"NOSPACE"}}, "a; b"},
		{EndpointStatus{Alarms: []string{"NOSPACE", "CORRUPT"}}, "alarms NOSPACE, CORRUPT"},
	} {
		err := tc.st.Problem()
		if got := fmt.Sprint(err); (err == nil && tc.want != "") || (err != nil && got != tc.want) {
			t.Errorf("Problem of %+v = %v, want %q", tc.st, err, tc.want)
		}
	}
}
