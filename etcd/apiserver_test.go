package etcd

import "testing"

func TestMemberOfNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Member
		want bool
	}{
		{"by name", Member{Name: "cp2", PeerURLs: []string{"https://10.0.0.99:2380"}}, true},
		{"unstarted, by peer address", Member{PeerURLs: []string{"https://10.0.0.12:2380"}}, true},
		{"IPv6 peer", Member{PeerURLs: []string{"https://[fd00::12]:2380"}}, true},
		{"another node whose address starts alike", Member{Name: "cp3", PeerURLs: []string{"https://10.0.0.120:2380"}}, false},
		{"another node", Member{Name: "cp1", PeerURLs: []string{"https://10.0.0.11:2380"}}, false},
	} {
		ip := "10.0.0.12"
		if tc.name == "IPv6 peer" {
			ip = "fd00::12"
		}
		if got := tc.m.OfNode("cp2", ip); got != tc.want {
			t.Errorf("%s: OfNode = %v, want %v", tc.name, got, tc.want)
		}
	}
}
