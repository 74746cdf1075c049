package fooking

// Client is what every transport does: Router (a router connection), Redis
// and NATS (straight onto the bus). Code written against it runs on any of
// them.
type Client interface {
	Kick(sids []string) error
	SendMsg(sids []string, msg []byte) error
	SendAll(msg []byte, exclude ...string) error
	ChAdd(sids []string, channel string) error
	ChDel(sids []string, channel string) error
	ChPub(channel string, msg []byte, exclude ...string) error
	BindUid(sid, uid string) error
	UnbindUid(sid string) error
	SendToUid(uids []string, msg []byte) error
	KickUid(uids ...string) error
	SetSession(sid string, data []byte) error
	IsOnline(sids []string) (map[string]bool, error)
	IsUidOnline(uid string) (int, error)
	GetSidsByUid(uid string) ([]string, error)
	GetUidBySid(sid string) (string, error)
	GetSession(sid string) (data []byte, found bool, err error)
	ChCount(channel string) (int, error)
	ChMembers(channel string) (map[string]string, error)
	ChSessions(channel string) (map[string][]byte, error)
	Channels() (map[string]int, error)
	Info() (*Info, error)
	Close() error
}

var (
	_ Client = (*Router)(nil)
	_ Client = (*Redis)(nil)
	_ Client = (*NATS)(nil)
)
