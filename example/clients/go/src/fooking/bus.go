package fooking

// The commands of the two bus transports (Redis, NATS), written once: each
// checks its arguments and hands the messages to the transport, which knows
// where they go (its busSender).

// busSender is what a bus transport sends commands through.
type busSender interface {
	// sidsCommand publishes one message of typ per gateway worker named by
	// the SIDs (at most MaxSIDs each), D = d.
	sidsCommand(typ uint16, sids []string, d []byte) error
	// uidsCommand publishes SEND_UID or KICK_UID for the uids.
	uidsCommand(typ uint16, uids []string, d []byte) error
	publish(msgs []pubMsg) error
	// Where SEND_ALL and CH_PUB of channel go.
	allSubject() string
	chSubject(channel string) string
}

type busCommands struct{ s busSender }

// Kick closes these clients.
func (b busCommands) Kick(sids []string) error { return b.s.sidsCommand(TypeKick, sids, nil) }

// SendMsg delivers msg to these clients.
func (b busCommands) SendMsg(sids []string, msg []byte) error {
	return b.s.sidsCommand(TypeSendMsg, sids, msg)
}

// SendAll delivers msg to every client of every gateway but the exclude SIDs
// (SEND_ALL without exclusions, SEND_ALL_EX with; at most MaxSIDs of them).
func (b busCommands) SendAll(msg []byte, exclude ...string) error {
	if len(exclude) == 0 {
		return b.s.publish([]pubMsg{{b.s.allSubject(), Encode(TypeSendAll, nil, msg)}})
	}
	s, err := excludeList(exclude, MaxSIDs)
	if err != nil {
		return err
	}
	return b.s.publish([]pubMsg{{b.s.allSubject(), Encode(TypeSendAllEx, s, msg)}})
}

// ChAdd makes these clients join channel.
func (b busCommands) ChAdd(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return b.s.sidsCommand(TypeChAdd, sids, []byte(channel))
}

// ChDel makes these clients leave channel.
func (b busCommands) ChDel(sids []string, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return b.s.sidsCommand(TypeChDel, sids, []byte(channel))
}

// ChPub delivers msg to every member of channel but the exclude SIDs (CH_PUB
// without exclusions, CH_PUB_EX with: at most min(MaxSIDs, (65534 -
// len(channel)) / 16) SIDs).
func (b busCommands) ChPub(channel string, msg []byte, exclude ...string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	if len(exclude) == 0 {
		return b.s.publish([]pubMsg{{b.s.chSubject(channel), Encode(TypeChPub, []byte(channel), msg)}})
	}
	s, err := chPubExS(channel, exclude)
	if err != nil {
		return err
	}
	return b.s.publish([]pubMsg{{b.s.chSubject(channel), Encode(TypeChPubEx, s, msg)}})
}

// ---- backend API v2: commands (published, no answer) ----

// BindUid binds the session to uid (replacing the uid it had).
func (b busCommands) BindUid(sid, uid string) error {
	if err := checkUID(uid); err != nil {
		return err
	}
	return b.s.sidsCommand(TypeBind, []string{sid}, []byte(uid))
}

// UnbindUid makes the session lose its uid.
func (b busCommands) UnbindUid(sid string) error {
	return b.s.sidsCommand(TypeUnbind, []string{sid}, nil)
}

// SendToUid delivers msg to every session bound to one of uids, each session
// once (Redis: the router's script publishes once to each gateway worker
// holding any of them; NATS: one message on <prefix>u.<uid> per distinct uid,
// which only the workers holding a session of that uid subscribe to).
func (b busCommands) SendToUid(uids []string, msg []byte) error {
	return b.s.uidsCommand(TypeSendUID, uids, msg)
}

// KickUid closes every session bound to one of uids.
func (b busCommands) KickUid(uids ...string) error {
	return b.s.uidsCommand(TypeKickUID, uids, nil)
}

// SetSession sets the session's data, kept by its gateway (0..MaxSession bytes,
// and no more than the gateway's SESSION_MAX_SIZE; empty clears it).
func (b busCommands) SetSession(sid string, data []byte) error {
	if len(data) > MaxSession {
		return argErrorf("fooking: session data is at most %d bytes, got %d", MaxSession, len(data))
	}
	return b.s.sidsCommand(TypeSessionSet, []string{sid}, data)
}
