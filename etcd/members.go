package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one etcd member as `etcdctl member list` shows it.
type Member struct {
	ID         string   `json:"id"` // hex, as etcdctl -w table prints it
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
	IsLearner  bool     `json:"isLearner"`
}

// EndpointStatus is `etcdctl endpoint status` for one endpoint.
type EndpointStatus struct {
	Endpoint    string   `json:"endpoint"`
	MemberID    string   `json:"memberID,omitempty"`
	Leader      bool     `json:"leader"`
	DBSize      int64    `json:"dbSize"`
	DBSizeInUse int64    `json:"dbSizeInUse"`
	RaftIndex   uint64   `json:"raftIndex"`
	RaftTerm    uint64   `json:"raftTerm"`
	Version     string   `json:"version"`
	Alarms      []string `json:"alarms,omitempty"`
	Errors      []string `json:"errors,omitempty"`
	Err         string   `json:"error,omitempty"` // the endpoint did not answer
}

// Problem says what is wrong with the status: the endpoint did not answer,
// it reported errors, or alarms are raised on its member; nil when nothing
// is. It is the one judgement of a member's health for the join gate of
// init and for certs renew.
func (s EndpointStatus) Problem() error {
	switch {
	case s.Err != "":
		return errors.New(s.Err)
	case len(s.Errors) > 0:
		return errors.New(strings.Join(s.Errors, "; "))
	case len(s.Alarms) > 0:
		return fmt.Errorf("alarms %s", strings.Join(s.Alarms, ", "))
	}
	return nil
}

// HexID formats a member ID as etcdctl does.
func HexID(id uint64) string { return strconv.FormatUint(id, 16) }

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var resp *clientv3.MemberListResponse
	err := c.call(ctx, "member list", func(ctx context.Context) (err error) {
		resp, err = c.MemberList(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(resp.Members))
	for _, m := range resp.Members {
		out = append(out, memberOf(m))
	}
	return out, nil
}

func memberOf(m *pb.Member) Member {
	mm := Member{ID: HexID(m.ID), Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
	if mm.PeerURLs == nil {
		mm.PeerURLs = []string{}
	}
	if mm.ClientURLs == nil {
		mm.ClientURLs = []string{}
	}
	return mm
}

// Status asks one endpoint for its status; alarms are the cluster's alarms
// raised on that member. An endpoint that does not answer is reported in Err,
// not as an error, so that a table can show every member.
func (c *Client) Status(ctx context.Context, endpoint string) EndpointStatus {
	st := EndpointStatus{Endpoint: endpoint}
	var resp *clientv3.StatusResponse
	err := c.call(ctx, "status of "+endpoint, func(ctx context.Context) (err error) {
		resp, err = c.Maintenance.Status(ctx, endpoint)
		return err
	})
	if err != nil {
		st.Err = err.Error()
		return st
	}
	st.MemberID = HexID(resp.Header.MemberId)
	st.Leader = resp.Leader == resp.Header.MemberId
	st.DBSize = resp.DbSize
	st.DBSizeInUse = resp.DbSizeInUse
	st.RaftIndex = resp.RaftIndex
	st.RaftTerm = resp.RaftTerm
	st.Version = resp.Version
	st.Errors = resp.Errors
	var alarms *clientv3.AlarmResponse
	if err := c.call(ctx, "alarm list", func(ctx context.Context) (err error) {
		alarms, err = c.AlarmList(ctx)
		return err
	}); err != nil {
		st.Errors = append(st.Errors, err.Error())
		return st
	}
	for _, a := range alarms.Alarms {
		if a.MemberID == resp.Header.MemberId {
			st.Alarms = append(st.Alarms, a.Alarm.String())
		}
	}
	return st
}

// MembersStatus lists the members and the status of each member's first
// client URL (each dialled through the client's node).
func (c *Client) MembersStatus(ctx context.Context) ([]Member, []EndpointStatus, error) {
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, nil, err
	}
	sts := make([]EndpointStatus, len(ms))
	for i, m := range ms {
		if len(m.ClientURLs) == 0 {
			sts[i] = EndpointStatus{Err: fmt.Sprintf("member %s has no client URL (not started yet?)", m.ID)}
			continue
		}
		sts[i] = c.Status(ctx, m.ClientURLs[0])
	}
	return ms, sts, nil
}
