package fuse

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MigratableFS is a FileSystem whose state can move to another process in a live migration:
// SaveState describes what the guest holds, LoadState opens it again on the destination.
type MigratableFS interface {
	SaveState() ([]byte, error)
	LoadState(state []byte) error
}

// migrationMagic starts every state this server writes, so that a destination tells a uvfsd
// state from another daemon's at once.
const migrationMagic = "uvfsd-fuse-state"

// sessionState is what moves in a live migration: the FUSE session the guest's driver believes
// in (it sends no INIT to the destination) and the file system's own state.
type sessionState struct {
	Magic  string
	Inited bool
	Init   InitInfo
	FS     json.RawMessage
}

// maxSessionState bounds what LoadState reads (the file system bounds its own part again).
const maxSessionState = 1<<30 + 1<<20

// SaveState writes the session and the file system's state to w. The transport calls it with every
// queue stopped.
func (s *Server) SaveState(w io.Writer) error {
	mfs, ok := s.fs.(MigratableFS)
	if !ok {
		return errors.New("this file system cannot migrate")
	}
	st := sessionState{Magic: migrationMagic, Inited: s.inited.Load()}
	if a := s.agreed.Load(); a != nil {
		st.Init = *a
	}
	fsState, err := mfs.SaveState()
	if err != nil {
		return err
	}
	st.FS = fsState
	return json.NewEncoder(w).Encode(&st)
}

// LoadState reads what a source's SaveState wrote and takes over its session: the guest goes on
// as if this server had answered its INIT. The transport calls it before any queue starts.
func (s *Server) LoadState(r io.Reader) error {
	mfs, ok := s.fs.(MigratableFS)
	if !ok {
		return errors.New("this file system cannot migrate")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxSessionState+1))
	if err != nil {
		return fmt.Errorf("reading the migration state: %w", err)
	}
	if len(data) > maxSessionState {
		return errors.New("migration state too large")
	}
	var st sessionState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("migration state: %w", err)
	}
	if st.Magic != migrationMagic {
		return errors.New("the migration state is not from uvfsd: migrate between uvfsd daemons")
	}
	if s.inited.Load() {
		return errors.New("migration state arrived after the guest mounted this uvfsd")
	}
	if !st.Inited {
		return nil // the guest had not mounted yet: nothing to take over
	}
	if st.Init.Minor < MinMinorVersion || st.Init.Minor > KernelMinorVersion || st.Init.MaxWrite > s.maxWrite {
		return fmt.Errorf("migration state: the source agreed on FUSE 7.%d with max_write %d, which this uvfsd cannot serve (max_write %d)",
			st.Init.Minor, st.Init.MaxWrite, s.maxWrite)
	}
	if st.Init.Flags&^s.opts.Want != 0 {
		return fmt.Errorf("migration state: the source agreed on capabilities %#x that this uvfsd does not offer: start both with the same options",
			st.Init.Flags&^s.opts.Want)
	}
	info := st.Init
	s.fs.Init(&info)
	if err := mfs.LoadState(st.FS); err != nil {
		s.fs.Destroy()
		return err
	}
	s.setxattrExt.Store(info.Flags&CapSetxattrExt != 0)
	s.agreed.Store(&info)
	s.inited.Store(true)
	return nil
}
